#!/usr/bin/env python3
"""A stream peer for fdpass/stream tests: connects to PATH and writes COUNT
records in uneven chunks, with fds on some of them.

A record is a header (u32 little-endian body length, u32 fd count) and a body
of that many bytes, all equal to index % 251. A record with fds is sent with
ONE sendmsg carrying its fds (so they sit on the record's first byte); large
ones are split by the kernel into several skbs. Fd-less records are cut into
random pieces sent separately, so the receiver sees them glued and split.
Each fd is a memfd whose content is "index:j". Prints a JSON summary.
"""
import json
import os
import random
import socket
import struct
import sys

path, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
sizes = [0, 1, 3, 17, 100, 4000, 70000, 300000]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
summary = {"records": 0, "fds": 0, "bytes": 0}
for i in range(count):
    size = rnd.choice(sizes)
    nfds = rnd.choice([0, 0, 1, 1, 2, 3])
    record = struct.pack("<II", size, nfds) + bytes([i % 251]) * size
    if nfds:
        fds = []
        for j in range(nfds):
            fd = os.memfd_create("rec%d-%d" % (i, j))
            os.write(fd, ("%d:%d" % (i, j)).encode())
            fds.append(fd)
        sent = sock.sendmsg([record], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % nfds, *fds))])
        if sent < len(record):
            sock.sendall(record[sent:])
        for fd in fds:
            os.close(fd)
    else:
        pos = 0
        while pos < len(record):
            step = rnd.choice([1, 5, 64, 5000, 200000])
            sock.sendall(record[pos:pos + step])
            pos += step
    summary["records"] += 1
    summary["fds"] += nfds
    summary["bytes"] += len(record)
sock.close()
print(json.dumps(summary))
