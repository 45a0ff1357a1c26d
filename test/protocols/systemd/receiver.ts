// A notify receiver that reads the way systemd's manager does: one recvmsg
// per datagram into a PIPE_BUF buffer with room for 253 fds, MSG_CMSG_CLOEXEC,
// and a message with MSG_CTRUNC or MSG_TRUNC is dropped (its fds closed).
// It prints one JSON line per datagram. For BARRIER=1 it keeps the fd until
// it reads a line on stdin, then closes it (the manager's "processed"). Told
// to "scribble", it writes into the fd first, says "scribbled" once the
// other end has read all of it, and holds the fd until a second line.
import { spawn } from 'node:child_process';
import { JsonLines } from '../../lines.js';

const code = String.raw`
import array, fcntl, json, os, socket, stat, struct, sys, termios, time
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
s.bind(("\0" + addr[1:]) if addr.startswith("@") else addr)
print(json.dumps({"event": "ready"}), flush=True)
while True:
    data, anc, flags, _ = s.recvmsg(4096, socket.CMSG_SPACE(253 * 4), socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(cdata[: len(cdata) - (len(cdata) % a.itemsize)])
            fds.extend(a)
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        print(json.dumps({"event": "dropped", "ctrunc": bool(flags & socket.MSG_CTRUNC), "trunc": bool(flags & socket.MSG_TRUNC)}), flush=True)
        continue
    info = []
    for fd in fds:
        st = os.fstat(fd)
        info.append({"fd": fd, "cloexec": not os.get_inheritable(fd), "ino": st.st_ino, "dev": st.st_dev, "target": os.readlink("/proc/self/fd/%d" % fd)})
    text = data.decode()
    print(json.dumps({"event": "message", "text": text, "fds": info}), flush=True)
    if text == "BARRIER=1":
        # "scribble": write bytes and fds into the barrier fd before closing
        # it, as a confused manager might (systemd's is a pipe: it cannot).
        if sys.stdin.readline().startswith("scribble"):
            b = socket.socket(fileno=os.dup(fds[0]))
            socket.send_fds(b, [b"junk"], [0, 1, 2])
            b.sendall(b"more junk")
            # SIOCOUTQ: bytes the other end has not read yet (an AF_UNIX
            # stream's data is charged to its sender until read). Nothing
            # signals the read itself: look every 5 ms, for up to 60 s.
            deadline = time.monotonic() + 60
            while struct.unpack("i", fcntl.ioctl(b.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0] > 0:
                if time.monotonic() > deadline:
                    sys.exit("the barrier's end never read the junk within 60 s")
                time.sleep(0.005)
            b.close()
            print(json.dumps({"event": "scribbled"}), flush=True)
            sys.stdin.readline()
    for fd in fds:
        os.close(fd)
    if text == "BARRIER=1":
        print(json.dumps({"event": "barrier-closed"}), flush=True)
`;

export interface Receiver {
  lines: JsonLines;
  /** Let the receiver finish processing a BARRIER=1 message. */
  release(): void;
  /** Write bytes and fds into the barrier fd; it says "scribbled" once they were read, and holds the fd until release(). */
  scribble(): void;
  stop(): void;
}

/** Start the python3 receiver on a path or '@abstract' address; resolves once bound. */
export async function startReceiver(address: string): Promise<Receiver> {
  const child = spawn('python3', ['-c', code, address], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = new JsonLines(child);
  await lines.event('event', 'ready');
  return {
    lines,
    release: () => child.stdin!.write('go\n'),
    scribble: () => child.stdin!.write('scribble\n'),
    stop: () => {
      child.kill('SIGKILL');
    },
  };
}
