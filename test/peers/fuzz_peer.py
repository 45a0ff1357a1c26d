#!/usr/bin/env python3
"""Hostile peer for the fuzz tests: randomized messages from a seed.

usage: fuzz_peer.py PATH TYPE SEED CONNS MSGS LAST_NAME [FLAVOUR]
  TYPE       stream | seqpacket | dgram | notify
  CONNS      connections (datagram: bursts) before the last good message
  MSGS       most messages per connection
  LAST_NAME  payload of the final well-formed message, sent with one memfd
             whose content is "intact"; '-' for none
  FLAVOUR    seccomp: half of the connections carry a ContainerProcessState
             (valid, mutated, oversized, cut, split over several sends, fds
             that differ from its names, or held open without end of file)

TYPE notify plays a hostile service manager instead (see notify_manager()).

Each message has 0..64 KiB of payload and 0..253 fds of every kind (file,
pipe, socket, pty, memfd, eventfd, pidfd), sometimes in two SCM_RIGHTS, with
SCM_CREDENTIALS beside them; some connections close mid-message or right
after connect. Send errors (EINVAL past 253 fds, EMSGSIZE, EPIPE, ...) are
part of the storm and are counted, not fatal. Prints a JSON summary.
"""
import array
import json
import os
import random
import signal
import socket
import struct
import sys
import time

path, kind, seed, conns, msgs, last_name = sys.argv[1:7]
flavour = sys.argv[7] if len(sys.argv) > 7 else ''
conns, msgs = int(conns), int(msgs)
rng = random.Random(int(seed))
signal.alarm(60)  # never outlive the test
SOCK = {'stream': socket.SOCK_STREAM, 'seqpacket': socket.SOCK_SEQPACKET, 'dgram': socket.SOCK_DGRAM, 'notify': socket.SOCK_DGRAM}[kind]

# A pool of fds of every kind, opened once and reused in messages.
pool = []
pool.append(os.open('/etc/hostname' if os.path.exists('/etc/hostname') else '/dev/null', os.O_RDONLY))
r, w = os.pipe()
pool += [r, w]
s1, s2 = socket.socketpair()
pool += [s1.detach(), s2.detach()]
master, slave = os.openpty()
pool += [master, slave]
pool.append(os.memfd_create('fuzz'))
pool.append(os.eventfd(0))
pool.append(os.pidfd_open(os.getpid()))

stats = {'sent': 0, 'errors': {}, 'conns': 0}


def count_error(e):
    name = e.__class__.__name__ if not isinstance(e, OSError) else (os.strerror(e.errno) if e.errno else str(e))
    stats['errors'][name] = stats['errors'].get(name, 0) + 1


def random_message():
    size = rng.choice([0, 1, 2, rng.randrange(0, 64), rng.randrange(0, 4097), rng.randrange(0, 65537)])
    data = rng.randbytes(size)
    nfds = rng.choice([0, 0, 1, 2, rng.randrange(0, 254)])
    fds = [rng.choice(pool) for _ in range(nfds)]
    anc = []
    if fds:
        if len(fds) > 1 and rng.random() < 0.3:  # two SCM_RIGHTS in one message
            cut = rng.randrange(1, len(fds))
            anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds[:cut])))
            anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds[cut:])))
        else:
            anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds)))
    if rng.random() < 0.2:  # credentials beside the rights
        anc.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack('iII', os.getpid(), os.getuid(), os.getgid())))
    if rng.random() < 0.05 and len(fds) < 200:  # one past the kernel's limit: EINVAL at our end
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [pool[0]] * 254))]
    return data, anc


def send_one(sock, addr=None):
    data, anc = random_message()
    try:
        if addr:
            sock.sendmsg([data], anc, 0, addr)
        else:
            sock.sendmsg([data], anc)
        stats['sent'] += 1
    except OSError as e:
        count_error(e)
        if e.errno in (32, 104, 111, 107):  # EPIPE, ECONNRESET, ECONNREFUSED, ENOTCONN
            return False
    return True


held = []  # seccomp flavour: connections kept open without end of file


def seccomp_state():
    """A ContainerProcessState as runc sends it, valid or broken, and how many fds go with it."""
    names = ['seccompFd'] + ['extra%d' % i for i in range(rng.choice([0, 0, 0, 1, 2]))]
    st = {
        'ociVersion': '1.0.2', 'fds': names, 'pid': rng.randrange(1, 1 << 22), 'metadata': 'fuzz',
        'state': {'ociVersion': '1.0.2', 'id': 'c%d' % rng.randrange(1 << 30),
                  'status': rng.choice(['creating', 'created', 'running', 'stopped']),
                  'pid': rng.randrange(1, 1 << 22), 'bundle': '/b', 'annotations': {'a': 'b'}},
    }
    nfds = len(names)
    m = rng.random()
    if m < 0.45:
        pass  # valid
    elif m < 0.55:
        nfds += rng.choice([-1, 1, 5])  # fds that differ from the names
    elif m < 0.65:
        del st[rng.choice(['ociVersion', 'fds', 'pid', 'state'])]
    elif m < 0.72:
        st['state']['status'] = rng.choice(['paused', 7, None])
    elif m < 0.77:
        st['fds'] = ['seccompFd', 'seccompFd']
        nfds = 2
    elif m < 0.84:
        st['state']['annotations'] = {'big': 'x' * rng.randrange(30000, 70000)}  # around maxStateBytes
    elif m < 0.9:
        st['pid'] = rng.choice([-1, 2 ** 40, 'one', 1.5])
    raw = json.dumps(st).encode()
    m = rng.random()
    if m < 0.08:
        raw = raw[: rng.randrange(0, len(raw))]  # cut short
    elif m < 0.12:
        raw = raw[:5] + b'\xff\xfe' + raw[5:]  # not UTF-8
    elif m < 0.15:
        raw = b''
    return raw, max(0, nfds)


def seccomp_connection(s):
    """One state, the fds on its first bytes, in 1 to 4 sends; then end of file, or held open."""
    raw, nfds = seccomp_state()
    fds = [rng.choice(pool) for _ in range(nfds)]
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))] if fds else []
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.choice([0, 0, 1, 3])))) if len(raw) > 1 else []
    parts = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]
    try:
        s.sendmsg([parts[0]], anc)
        for part in parts[1:]:
            s.sendall(part)
        stats['sent'] += 1
    except OSError as e:
        count_error(e)
    if rng.random() < 0.05 and len(held) < 4:
        held.append((time.monotonic(), s.dup()))  # no end of file: the listener's timeout


def notify_manager():
    """A hostile service manager bound at PATH (SOCK_DGRAM), reading what
    notify(), storeFds() and notifyBarrier() send. It restarts now and then
    (the queue is lost: senders see ENOENT or ECONNREFUSED), is slow, reads
    with a control buffer too small (MSG_CTRUNC: dropped, as systemd does),
    and answers BARRIER=1 by closing the fd, holding it (it prints held:
    the sender gives up), writing a storm of random messages and fds into it (it is one end
    of a stream socketpair) or half a message, then closing it. Once the
    LAST_NAME datagram came (its fd's content is printed) it behaves, and the
    next barrier ends it. Prints JSON lines: ready, last, then the summary."""

    def bind():
        b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        b.bind(path)
        b.settimeout(30)
        return b

    s = bind()
    print(json.dumps({'event': 'ready'}), flush=True)
    kept = []
    finale = False
    stats.update({'received': 0, 'dropped': 0, 'restarts': 0, 'barriers': {}})
    while True:
        if not finale:
            f = rng.random()
            if f < 0.02:
                s.close()
                os.unlink(path)
                time.sleep(0.005)
                s = bind()
                stats['restarts'] += 1
            elif f < 0.06:
                time.sleep(0.02)
        small = not finale and rng.random() < 0.1
        ctrl = socket.CMSG_SPACE(4 * rng.randrange(0, 3)) if small else socket.CMSG_SPACE(253 * 4)
        data, anc, flags, _ = s.recvmsg(4096, ctrl, socket.MSG_CMSG_CLOEXEC)
        stats['received'] += 1
        fds = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array('i')
                a.frombytes(cdata[: len(cdata) - (len(cdata) % a.itemsize)])
                fds.extend(a)
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            for fd in fds:
                os.close(fd)
            stats['dropped'] += 1
            continue
        if data == b'BARRIER=1' and len(fds) == 1:
            fd = fds[0]
            if finale:
                os.close(fd)
                break
            # Fds held by earlier barriers go now and then (before this one
            # is decided, so that one said to be held stays held).
            if len(kept) > 3 or (kept and rng.random() < 0.2):
                os.close(kept.pop(0))
            fate = rng.random()
            if fate < 0.35:
                what = 'closed'
                os.close(fd)
            elif fate < 0.55:
                what = 'held'
                kept.append(fd)
                print(json.dumps({'event': 'held'}), flush=True)
            else:
                b = socket.socket(fileno=fd)
                b.settimeout(2)
                if fate < 0.85:
                    what = 'storm'
                    for _ in range(rng.randrange(1, msgs + 1)):
                        if not send_one(b):
                            break
                else:
                    what = 'half'
                    try:
                        b.send(rng.randbytes(rng.randrange(1, 9000)))
                    except OSError as e:
                        count_error(e)
                b.close()
            stats['barriers'][what] = stats['barriers'].get(what, 0) + 1
            continue
        if not finale and data == last_name.encode() and len(fds) == 1:
            content = os.pread(fds[0], 64, 0).decode(errors='replace')
            print(json.dumps({'event': 'last', 'content': content}), flush=True)
            finale = True
        for fd in fds:
            os.close(fd)
    for fd in kept:
        os.close(fd)
    s.close()
    os.unlink(path)
    print(json.dumps(stats), flush=True)


if kind == 'notify':
    notify_manager()
    sys.exit(0)

for i in range(conns):
    stats['conns'] += 1
    s = socket.socket(socket.AF_UNIX, SOCK)
    s.settimeout(20)
    try:
        if kind == 'dgram':
            for _ in range(rng.randrange(0, msgs + 1)):
                send_one(s, path)
            s.close()
            continue
        s.connect(path)
        if flavour == 'seccomp' and rng.random() < 0.5:
            seccomp_connection(s)
            continue
        fate = rng.random()
        if fate < 0.3:  # connect and vanish
            s.close()
            continue
        for _ in range(rng.randrange(1, msgs + 1)):
            if not send_one(s):
                break
        if kind == 'stream' and fate < 0.5:  # close mid-message: half of a payload
            try:
                s.send(rng.randbytes(rng.randrange(1, 9000)))
            except OSError as e:
                count_error(e)
    except OSError as e:
        count_error(e)
    finally:
        s.close()

# Held connections end once the listener had time to time them out.
if held:
    time.sleep(max(0.0, held[0][0] + 1.2 - time.monotonic()))
    for _, h in held:
        h.close()

if last_name != '-':
    good = os.memfd_create('last-good')
    os.write(good, b'intact')
    s = socket.socket(socket.AF_UNIX, SOCK)
    s.settimeout(20)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [good]))]
    if kind == 'dgram':
        s.sendmsg([last_name.encode()], anc, 0, path)
    else:
        s.connect(path)
        s.sendmsg([last_name.encode()], anc)
    s.close()
    os.close(good)

print(json.dumps(stats))
