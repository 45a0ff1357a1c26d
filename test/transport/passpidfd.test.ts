// passPidfd: true (SO_PASSPIDFD / SCM_PIDFD, Linux >= 6.5): every message a
// datagram or seqpacket socket receives carries a pidfd of its sender, as
// message.pidfd; a pidfd nobody takes (a message refused, left buffered at
// close, received by recvFd, or on a socket without the option) is closed.
// Checked against our own sender and CPython's, by the pidfd's Pid: in
// fdinfo and by its inode (pidfs: every pidfd of one process is one inode).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { FdServer, FdSocket, closeFds, type ReceivedMessage } from 'fdpass';
import { Pidfd } from 'fdpass/pidfd';
import { fdTable, isOpen, noLeak, openFds, python, runPython, tempDir } from '../helpers.js';
import { JsonLines } from '../lines.js';
import { needs } from '../tools.js';

const [major, minor] = release().split('.').map(Number) as [number, number];
const hasPassPidfd = major > 6 || (major === 6 && minor >= 5);
const newKernel = hasPassPidfd ? false : `Linux ${release()} has no SO_PASSPIDFD (6.5)`;
const oldKernel = hasPassPidfd ? `Linux ${release()} has SO_PASSPIDFD: tested above` : false;

/** The Pid: line of an fd's fdinfo (what the kernel says the pidfd names). */
function fdinfoPid(fd: number): number {
  const m = /^Pid:\s*(-?\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
  assert.ok(m, `fd ${fd} has no Pid: line`);
  return Number(m[1]);
}

/** How many pidfds this process has open. */
function pidfds(): number {
  return [...fdTable().values()].filter((target) => target.includes('pidfd')).length;
}

/** The message's pidfd, asserted present. */
function pidfdOf(m: ReceivedMessage | null): Pidfd {
  assert.ok(m && m.pidfd instanceof Pidfd, 'the message carries a Pidfd');
  return m.pidfd;
}

// A CPython sender that stays alive until its stdin closes: it sends one
// message with one fd (its stdin), then prints its pid and the inode of a
// pidfd of itself (os.pidfd_open), as a JSON line.
const PY_SENDER = `import json, os, socket, sys
kind = socket.SOCK_DGRAM if sys.argv[2] == 'dgram' else socket.SOCK_SEQPACKET
s = socket.socket(socket.AF_UNIX, kind)
s.connect(sys.argv[1])
socket.send_fds(s, [b'from python'], [0])
me = os.pidfd_open(os.getpid())
print(json.dumps({'pid': os.getpid(), 'ino': os.fstat(me).st_ino}), flush=True)
sys.stdin.read()
`;

describe('passPidfd: true', { skip: newKernel }, () => {
  test('FdSocket.bindDatagram({ passPidfd: true }): our own sender, the pidfd names this process; fds and pidfd together', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      const fd = openSync('/dev/null', 'r');
      await tx.send('one', [fd]);
      await tx.send('two');
      const m1 = await rx.recv();
      const p1 = pidfdOf(m1);
      assert.deepEqual([m1!.data.toString(), m1!.fds.length], ['one', 1]);
      assert.equal(p1.pid, process.pid);
      assert.equal(fdinfoPid(p1.fd), process.pid);
      const mine = Pidfd.open(process.pid);
      assert.equal(fstatSync(p1.fd).ino, fstatSync(mine.fd).ino, 'one process, one pidfs inode');
      mine.close();
      closeSync(m1!.fds[0]!);
      // The 'message' event hands pidfds out too.
      const [m2] = (await once(rx, 'message')) as [ReceivedMessage];
      assert.equal(m2.data.toString(), 'two');
      pidfdOf(m2).close();
      p1.close();
      closeSync(fd);
      rx.close();
      tx.close();
      t.cleanup();
    }));

  test('pidfds of messages nobody received are closed with the socket; a socket without the option hands out none', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      for (let i = 0; i < 5; i++) await tx.send(`m${i}`);
      const first = await rx.recv();
      pidfdOf(first).close();
      // Four messages are buffered (one batch read them), each with its pidfd.
      assert.equal(pidfds(), 4);
      rx.close();
      assert.equal(pidfds(), 0, 'closed with the socket');

      // SO_PASSPIDFD on, but the FdSocket was not asked for pidfds (an
      // adopted socket): they are closed as they arrive.
      const rx2 = FdSocket.bindDatagram({ path: t.path('e'), passPidfd: true });
      const adopted = FdSocket.fromFd(rx2.release());
      await rx2.close();
      const tx2 = await FdSocket.connect({ path: t.path('e'), type: 'dgram' });
      await tx2.send('to the adopted one');
      const m = await adopted.recv();
      assert.equal(m!.data.toString(), 'to the adopted one');
      assert.equal('pidfd' in m!, false);
      adopted.close();
      tx.close();
      tx2.close();
      t.cleanup();
    }));

  test('a refused message closes its pidfd: MSG_TRUNC, maxBytes, maxFds (the fds cut), recvFd', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      const fd = openSync('/dev/null', 'r');
      await tx.send('longer than four');
      await assert.rejects(rx.recv({ maxBytes: 4 }), { code: 'ERR_FDPASS_TRUNCATED' });
      await tx.send('two fds', [fd, fd]);
      await assert.rejects(rx.recv({ maxFds: 1 }), { code: 'ERR_FDPASS_CONTROL_TRUNCATED' });
      // Larger than any read (MSG_TRUNC from the kernel).
      await tx.send(Buffer.alloc(100_000));
      await assert.rejects(rx.recv(), { code: 'ERR_FDPASS_TRUNCATED' });
      // recvFd: a runc message names no sender; the pidfd is closed, the fd handed out.
      await tx.sendFd('name', fd);
      const got = await rx.recvFd();
      assert.equal(got.name, 'name');
      closeSync(got.fd);
      await tx.send('no fd');
      await assert.rejects(rx.recvFd(), { code: 'ERR_FDPASS_NO_FD' });
      closeSync(fd);
      rx.close();
      tx.close();
      t.cleanup();
    }));

  test("FdSocket.connect({ type: 'seqpacket', passPidfd: true }): what the server sends names the server", () =>
    noLeak(async () => {
      const t = tempDir();
      const server = await FdServer.listen({ path: t.path('s'), type: 'seqpacket' });
      const client = await FdSocket.connect({ path: t.path('s'), type: 'seqpacket', passPidfd: true });
      const conn = await server.accept();
      await conn.send('hello');
      // An empty message is a message here, not the end: it carries a pidfd.
      await conn.send('');
      const m = await client.recv();
      assert.equal(m!.data.toString(), 'hello');
      pidfdOf(m).close();
      const empty = await client.recv();
      assert.equal(empty!.data.length, 0);
      pidfdOf(empty).close();
      // The server's side has no pidfds.
      await client.send('back');
      const back = await conn.recv();
      assert.equal('pidfd' in back!, false);
      conn.close();
      const end = await client.recv();
      assert.equal(end, null);
      client.close();
      await server.close();
      t.cleanup();
    }));

  test('acceptFds: false with passPidfd: true: fds refused, the sender still named', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), acceptFds: false, passPidfd: true });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      const fd = openSync('/dev/null', 'r');
      await assert.rejects(tx.send('x', [fd]), { code: 'ERR_FDPASS_FDS_REFUSED' });
      await tx.send('plain');
      const m = await rx.recv();
      assert.deepEqual([m!.data.toString(), m!.fds], ['plain', []]);
      const p = pidfdOf(m);
      assert.equal(p.pid, process.pid);
      p.close();
      closeSync(fd);
      rx.close();
      tx.close();
      t.cleanup();
    }));

  for (const type of ['dgram', 'seqpacket'] as const) {
    test(
      `a live CPython sender on ${type}: the pidfd's pid and inode are those of os.pidfd_open in the sender; exited() after it ends`,
      needs('python3'),
      () =>
        noLeak(async () => {
          const t = tempDir();
          let rx: FdSocket;
          let server: FdServer | null = null;
          if (type === 'dgram') rx = FdSocket.bindDatagram({ path: t.path('s'), passPidfd: true });
          else server = await FdServer.listen({ path: t.path('s'), type, passPidfd: true });
          const child = spawn(python, ['-c', PY_SENDER, t.path('s'), type], { stdio: ['pipe', 'pipe', 'inherit'] });
          const lines = new JsonLines(child);
          const said = await lines.next();
          // On seqpacket the connection was made, and the message sent, before accept.
          if (server) rx = await server.accept();
          const m = await rx!.recv();
          assert.equal(m!.data.toString(), 'from python');
          assert.equal(m!.fds.length, 1);
          closeSync(m!.fds[0]!);
          const p = pidfdOf(m);
          assert.equal(p.pid, said.pid);
          assert.equal(fdinfoPid(p.fd), said.pid);
          assert.equal(fstatSync(p.fd).ino, said.ino);
          p.signal(0);
          child.stdin!.end();
          const status = await p.exited();
          assert.deepEqual([status.code, status.signal], [0, null]);
          if (child.exitCode === null) await once(child, 'exit');
          p.close();
          rx!.close();
          await server?.close();
          t.cleanup();
        }),
    );
  }

  test(
    'a sender that exited and was reaped before the read: Linux 6.18 still gives a pidfd, Pid: -1, with its exit status',
    needs('python3'),
    () =>
      noLeak(async () => {
        const t = tempDir();
        const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
        // spawnSync waits for it and reaps it.
        const ran = spawnSync(
          python,
          [
            '-c',
            `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
s.send(b'gone')
sys.exit(7)`,
            t.path('d'),
          ],
          { stdio: ['ignore', 'ignore', 'inherit'] },
        );
        assert.equal(ran.status, 7);
        const m = await rx.recv();
        assert.equal(m!.data.toString(), 'gone');
        const p = pidfdOf(m);
        assert.equal(p.pid, -1);
        assert.equal(fdinfoPid(p.fd), -1);
        const status = await p.exited();
        assert.deepEqual([status.code, status.known], [7, true]);
        p.close();
        rx.close();
        t.cleanup();
      }),
  );

  // With `spare` fd numbers left after the fds: 0, the kernel cannot make the
  // pidfd; 2, it can and the Pidfd adopts it (reading /proc/self/fdinfo
  // takes the second).
  for (const spare of [0, 2]) {
    test(
      `the receiver at RLIMIT_NOFILE with ${spare} numbers free after the fds: message.pidfd is ${spare ? 'the sender' : 'null (the kernel wrote EMFILE)'}`,
      needs('python3', 'prlimit'),
      () =>
        noLeak(async () => {
          const t = tempDir();
          const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
          const nfds = 8;
          // A CPython sender with normal limits: one message of `nfds` fds.
          const child = spawn(python, [
            '-c',
            `import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
socket.send_fds(s, [b'full'], [0] * ${nfds})
print(json.dumps({'pid': os.getpid()}), flush=True)
sys.stdin.read()`,
            t.path('d'),
          ]);
          const lines = new JsonLines(child);
          const said = await lines.next();
          // RLIMIT_NOFILE bounds fd numbers: leave exactly nfds + spare of
          // them, above room held for the prlimit that raises it again.
          const room = Array.from({ length: 32 }, () => openSync('/dev/null', 'r'));
          const open = new Set(openFds().filter(isOpen));
          let limit = 0;
          for (let n = 0; n < nfds + spare; limit++) if (!open.has(limit)) n++;
          const old = execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '--output=SOFT,HARD', '--noheadings'])
            .toString()
            .trim()
            .split(/\s+/);
          execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${limit}:${old[1]}`]);
          let m: ReceivedMessage | null;
          try {
            m = await rx.recv();
            closeFds(m!.fds);
          } finally {
            closeFds(room);
            execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${old[0]}:${old[1]}`]);
          }
          assert.equal(m!.data.toString(), 'full');
          assert.equal(m!.fds.length, nfds, 'every fd fit');
          if (spare) {
            assert.equal(pidfdOf(m).pid, said.pid);
            m!.pidfd!.close();
          } else assert.equal(m!.pidfd, null);
          child.stdin.end();
          if (child.exitCode === null) await once(child, 'exit');
          rx.close();
          t.cleanup();
        }),
    );
  }

  test(
    'the kernel fact relied on above, seen by a CPython receiver: at RLIMIT_NOFILE, SCM_PIDFD carries -EMFILE, no MSG_CTRUNC',
    needs('python3'),
    () => {
      const out = runPython(
        `import os, resource, socket
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
b.setsockopt(socket.SOL_SOCKET, 76, 1)  # SO_PASSPIDFD
a.send(b'x')
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
fds = []
while True:
    try:
        fds.append(os.open('/dev/null', os.O_RDONLY))
    except OSError:
        break
data, anc, flags, _ = b.recvmsg(16, socket.CMSG_SPACE(4))
print([(lvl, typ, int.from_bytes(d, 'little', signed=True)) for lvl, typ, d in anc], flags & socket.MSG_CTRUNC)`,
      );
      assert.equal(out.trim(), `[(1, 4, -24)] 0`);
    },
  );

  test('passPidfd is checked before anything is created: a boolean, and not on stream sockets', () =>
    noLeak(async () => {
      const t = tempDir();
      assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), passPidfd: 1 as unknown as boolean }), {
        code: 'ERR_INVALID_ARG_TYPE',
      });
      assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), type: 'stream', passPidfd: true }), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => FdSocket.connect({ path: t.path('d'), passPidfd: true }), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => FdServer.listen({ path: t.path('s'), passPidfd: true }), { code: 'ERR_INVALID_ARG_VALUE' });
      t.cleanup();
    }));
});

test('passPidfd: true on a kernel without SO_PASSPIDFD: ERR_FDPASS_UNSUPPORTED_KERNEL, nothing left open', { skip: oldKernel }, () =>
  noLeak(async () => {
    const t = tempDir();
    assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true }), {
      code: 'ERR_FDPASS_UNSUPPORTED_KERNEL',
      syscall: 'setsockopt',
    });
    t.cleanup();
  }),
);
