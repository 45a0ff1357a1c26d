#!/usr/bin/env python3
"""A peer that stops at one step of a conversation, says so, and waits to be
SIGKILLed there (test/peer-death.test.ts).

usage: dying_peer.py STEP PATH

It prints one JSON line {"event": "ready", ...} once it reached STEP, then
sleeps. Earlier lines ({"event": "listening"}) tell the test when to connect.

Core steps (the peer connects to PATH, a stream socket, unless said otherwise):
  fill-backlog   listen at PATH with backlog 0 and fill the backlog with our
                 own connections, never accepting: a connect to PATH waits
  connect        connected, nothing sent (never reads: backpressure)
  data           sent b"hello", no fds
  half-fds       sent b"HEAD" with 3 fds: the first chunk of a 16-byte
                 message, the other 12 bytes never come
  seccomp-half   sent the first 40 bytes of a ContainerProcessState with one fd

Handoff, the peer as a successor (PATH is the running generation's control socket):
  h-connected    connected, no take request yet
  h-took         sent take, received the offer and its fds
  h-renamed      also bound its own control socket and renamed it over PATH
  h-ready        also sent ready

Handoff, the peer as the running generation (it listens at PATH):
  o-accepted     accepted a successor and read its take request; no offer
  o-offered      sent the offer: one TCP listener named "http" (its port in the line)
  o-ready        read the successor's ready; no answer
"""
import array
import json
import os
import signal
import socket
import sys
import time

step, path = sys.argv[1:3]
signal.alarm(60)  # never outlive the test


def say(event, **extra):
    print(json.dumps({'event': event, **extra}), flush=True)


def ready(**extra):
    say('ready', **extra)
    while True:
        time.sleep(60)


def rights(fds):
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))]


if step == 'fill-backlog':
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    mine = []
    for _ in range(16):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        mine.append(c)
    ready(queued=len(mine))

if step in ('connect', 'data', 'half-fds', 'seccomp-half'):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if step == 'connect':
        ready()
    if step == 'data':
        s.sendall(b'hello')
        ready()
    if step == 'half-fds':
        fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(3)]
        s.sendmsg([b'HEAD'], rights(fds))
        ready()
    state = json.dumps({'ociVersion': '1.0.2', 'fds': ['seccompFd'], 'pid': 1,
                        'state': {'ociVersion': '1.0.2', 'id': 'half', 'status': 'creating', 'bundle': '/b'}}).encode()
    s.sendmsg([state[:40]], rights([os.open('/dev/null', os.O_RDONLY)]))
    ready()

if step.startswith('h-'):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(path)
    if step == 'h-connected':
        ready()
    c.send(json.dumps({'op': 'take', 'version': 1, 'pid': os.getpid()}).encode())
    data, anc, flags, _ = c.recvmsg(65536, socket.CMSG_SPACE(253 * 4), socket.MSG_CMSG_CLOEXEC)
    offer = json.loads(data)
    nfds = sum(len(d) // 4 for level, typ, d in anc if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS)
    if step == 'h-took':
        ready(offer=offer, fds=nfds)
    tmp = '%s.%d.new' % (path, os.getpid())
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ctl.bind(tmp)
    ctl.listen()
    os.rename(tmp, path)
    if step == 'h-renamed':
        ready()
    c.send(json.dumps({'op': 'ready'}).encode())
    ready()

if step.startswith('o-'):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen()
    say('listening')
    c, _ = srv.accept()
    take = json.loads(c.recv(65536))
    if step == 'o-accepted':
        ready(take=take)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(('127.0.0.1', 0))
    tcp.listen()
    offer = {'op': 'offer', 'version': 1, 'pid': os.getpid(), 'names': ['http']}
    c.sendmsg([json.dumps(offer).encode()], rights([tcp.fileno()]))
    port = tcp.getsockname()[1]
    if step == 'o-offered':
        ready(port=port)
    msg = json.loads(c.recv(65536))
    ready(port=port, got=msg)

sys.exit('unknown step ' + step)
