// Acting on fds (issue 14) on every runtime: a Pidfd waits for a process it
// did not start through the runtime's readiness backend, peerPidfd names the
// peer of a socket, and a pty master takes a window size and carries bytes
// both ways.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { release } from 'node:os';
import { FdSocket } from 'fdpass';
import { Pidfd } from 'fdpass/pidfd';
import { PtyStream, listenConsoleSocket } from 'fdpass/runc';
import { noLeak, tempDir, test, which } from './harness.mjs';

// PIDFD_GET_INFO's exit status is Linux >= 6.15; qemu-user
// (FDPASS_CONFORMANCE_EMULATOR, the arm64 run of the installed package) does
// not translate that ioctl, so there a child Node reaped first is unknown, as
// on an older kernel (seen in a CI run: known false, signal null).
const [major, minor] = release().split('.').map(Number);
const hasExitInfo = (major > 6 || (major === 6 && minor >= 15)) && !process.env.FDPASS_CONFORMANCE_EMULATOR;

test('Pidfd: signal a process and wait for its exit on the event loop', async () => {
  // The child is started outside the fd count, and the count is taken again
  // only once the runtime has seen the child close. (Deno's own socketpair,
  // opened after a first child, is opened before any count: settleRuntime.)
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const closed = new Promise((r) => child.once('close', r));
  await noLeak(async () => {
    const p = Pidfd.open(child.pid);
    assert.equal(p.pid, child.pid);
    const exited = p.exited();
    p.signal('SIGTERM');
    const status = await exited;
    // How it ended, from the kernel (known on Linux >= 6.15 whoever reaped it).
    if (status.known || hasExitInfo) assert.deepEqual(status, { code: null, signal: 'SIGTERM', coreDumped: false, known: true });
    p.close();
    await closed;
  });
});

test('peerPidfd: the peer of a socketpair is this process', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const p = a.peerPidfd();
    assert.equal(p.pid, process.pid);
    p.close();
    await a.close();
    await b.close();
  }));

test('PtyStream.resize and getWindowSize on a pty master', () =>
  noLeak(async () => {
    const pty = new PtyStream(openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY));
    pty.resize(120, 40);
    assert.deepEqual(pty.getWindowSize(), { cols: 120, rows: 40 });
    pty.destroy();
    await new Promise((r) => pty.once('close', r));
  }));

// A terminal on a real pty pair, made by Python: it sends the master the way
// runc does (over a console socket: an fd this runtime did not open, which
// Deno's node:fs refuses), sets the slave raw and echoes every byte it reads
// back through the slave. More than the pty holds goes each way, so both
// directions wait for readiness (EAGAIN, then POLLOUT / POLLIN).
const ptyPeer = `import os, socket, sys, tty
m, s = os.openpty()
tty.setraw(s)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sys.argv[1])
socket.send_fds(c, [b'/dev/pts/ptmx'], [m])
c.close()
os.close(m)
want, got = int(sys.argv[2]), 0
while got < want:
    d = os.read(s, 65536)
    if not d:
        break
    got += len(d)
    os.write(s, d)
end = os.read(s, 1)
print(got, end.decode(), flush=True)
`;

test(
  'PtyStream: bytes both ways through a real pty pair, then the hang-up ends it',
  () =>
    noLeak(async () => {
      const t = tempDir();
      const listener = await listenConsoleSocket(t.path('tty.sock'));
      const payload = Buffer.alloc(256 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = 0x21 + (i % 90);
      const peer = spawn('python3', ['-c', ptyPeer, t.path('tty.sock'), String(payload.length)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      peer.stdout.on('data', (d) => (out += d));
      peer.stderr.on('data', (d) => (out += d));
      const exited = new Promise((r) => peer.once('close', (code) => r(code)));
      try {
        const got = await listener.next();
        assert.equal(got.name, '/dev/pts/ptmx');
        const pty = new PtyStream(got.fd);
        const chunks = [];
        let size = 0;
        const echoed = new Promise((resolve, reject) => {
          pty.on('error', reject);
          pty.on('data', (d) => {
            chunks.push(d);
            size += d.length;
            if (size >= payload.length) resolve();
          });
        });
        for (let i = 0; i < payload.length; i += 65536) pty.write(payload.subarray(i, i + 65536));
        await echoed;
        assert.equal(size, payload.length);
        assert.ok(Buffer.concat(chunks).equals(payload), 'the echo differs from what was written');
        // The last byte lets the peer exit: its slave closes, the master
        // reads EIO, and the readable side ends.
        const ended = new Promise((r) => pty.once('end', r));
        pty.write('q');
        await ended;
        assert.equal(await exited, 0, out);
        assert.equal(out, `${payload.length} q\n`);
        pty.destroy();
        await new Promise((r) => pty.once('close', r));
      } finally {
        peer.kill();
        await exited;
        await listener.close();
        t.cleanup();
      }
    }),
  which('python3') ? {} : { needs: 'python3 not found on PATH: apt-get install -y python3' },
);
