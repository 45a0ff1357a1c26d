# CPython ends of the benchmark: socket.send_fds / socket.recv_fds over the
# AF_UNIX stream socket inherited as fd 3. Same modes and output as fdbench.c:
#   python_peer.py send COUNT NFDS | recv COUNT NFDS WARMUP
#                  ping COUNT WARMUP | pong COUNT
import json
import os
import socket
import sys
import time

NAME = b"/dev/ptmx"
mode = sys.argv[1]
count = int(sys.argv[2])
sock = socket.socket(fileno=3)
sock.setblocking(True)
payload_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def recv_close(nfds):
    data, fds, _flags, _addr = socket.recv_fds(sock, 64, 253)
    if len(fds) != nfds:
        raise SystemExit(f"expected {nfds} fds, got {len(fds)} (data {data!r})")
    for fd in fds:
        os.close(fd)


if mode == "send":
    fds = [payload_fd] * int(sys.argv[3])
    for _ in range(count):
        socket.send_fds(sock, [NAME], fds)
elif mode == "recv":
    nfds, warmup = int(sys.argv[3]), int(sys.argv[4])
    t0 = time.monotonic()
    for i in range(count):
        if i == warmup:
            t0 = time.monotonic()
        recv_close(nfds)
    print(json.dumps({"messages": count - warmup, "seconds": time.monotonic() - t0}))
elif mode == "ping":
    warmup = int(sys.argv[3])
    lat = []
    for i in range(count):
        t = time.monotonic()
        socket.send_fds(sock, [NAME], [payload_fd])
        recv_close(1)
        lat.append(time.monotonic() - t)
    lat = sorted(lat[warmup:])
    n = len(lat)
    print(json.dumps({"messages": n, "p50": lat[n // 2], "p99": lat[(n * 99) // 100]}))
elif mode == "pong":
    for _ in range(count):
        recv_close(1)
        socket.send_fds(sock, [NAME], [payload_fd])
else:
    raise SystemExit(f"unknown mode {mode}")
sock.close()
