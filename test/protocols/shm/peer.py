# A CPython peer for test/shm: os.memfd_create, mmap and fcntl seals,
# talking over the AF_UNIX stream socket it inherits as fd 3.
#   make SIZE SEAL    create a memfd of SIZE bytes holding b"from python" at 0,
#                     sealed against shrinking and growing if SEAL is 1, send it;
#                     then obey: "t" truncate it to 0 (answer "T" or "EPERM"),
#                     "p" print its bytes 100..110 as the mapping shows them.
#   take              receive one fd, print its size, seals and first bytes
#                     (up to the first NUL) from a mapping, write b"hi from python"
#                     at 200 through a shared mapping, answer "w".
import fcntl, mmap, os, socket, sys

sock = socket.socket(fileno=3)
sock.setblocking(True)  # our end of a socket pair made non-blocking for fdpass


def seals(fd):
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return -1


if sys.argv[1] == "make":
    size, seal = int(sys.argv[2]), sys.argv[3] == "1"
    fd = os.memfd_create("py-shm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if size >= 11:
        os.pwrite(fd, b"from python", 0)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    socket.send_fds(sock, [b"m"], [fd])
    while True:
        cmd = sock.recv(1)
        if cmd == b"t":
            try:
                os.ftruncate(fd, 0)
                sock.sendall(b"T")
            except PermissionError:
                sock.sendall(b"E")
        elif cmd == b"p":
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
            print(mm[100:110].decode(), flush=True)
            mm.close()
            sock.sendall(b"P")
        else:
            break
elif sys.argv[1] == "take":
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    fd = fds[0]
    size = os.fstat(fd).st_size
    mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    head = mm[: mm.find(b"\0")] if size else b""
    print(size, seals(fd), head.decode(), flush=True)
    mm[200:214] = b"hi from python"
    mm.close()
    os.close(fd)
    sock.sendall(b"w")
    sock.recv(1)
