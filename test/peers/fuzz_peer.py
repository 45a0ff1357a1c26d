#!/usr/bin/env python3
"""Hostile peer for the fuzz tests: randomized messages from a seed.

usage: fuzz_peer.py PATH TYPE SEED CONNS MSGS LAST_NAME
  TYPE       stream | seqpacket | dgram
  CONNS      connections (datagram: bursts) before the last good message
  MSGS       most messages per connection
  LAST_NAME  payload of the final well-formed message, sent with one memfd
             whose content is "intact"; '-' for none

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

path, kind, seed, conns, msgs, last_name = sys.argv[1:7]
conns, msgs = int(conns), int(msgs)
rng = random.Random(int(seed))
signal.alarm(60)  # never outlive the test
SOCK = {'stream': socket.SOCK_STREAM, 'seqpacket': socket.SOCK_SEQPACKET, 'dgram': socket.SOCK_DGRAM}[kind]

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
