// The core: FdSocket, FdServer, the *Sync helpers, closeFds, errors, leaks
// and process lifetime, the same on every runtime.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readlinkSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { FdServer, FdSocket, FdPassError, MAX_FDS, closeFds, recvFdSync, sendFdSync } from 'fdpass';
import { noLeak, runChild, tempDir, test } from './harness.mjs';

const target = (fd) => readlinkSync(`/proc/self/fd/${fd}`);

test('importing fdpass and exiting: exit 0, no abort (Deno aborted with a double free here)', async () => {
  const r = await runChild(`import 'fdpass'; console.log('imported');`);
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'imported\n');
});

test('a pair passing fds, then exit: exit 0, no abort', async () => {
  const r = await runChild(
    `import { FdSocket } from 'fdpass';
     const [a, b] = FdSocket.pair();
     await a.send('x', [0]);
     const m = await b.recv();
     await a.close();
     await b.close();
     console.log(m.data.toString(), m.fds.length);`,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'x 1\n');
});

for (const type of ['stream', 'seqpacket', 'dgram']) {
  test(`${type}: send/recv with 0, 1 and ${MAX_FDS} fds; the fds are the files sent`, () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('f'), 'content');
      const fd = openSync(t.path('f'), 'r');
      const [a, b] = FdSocket.pair(type);
      // One at a time: a stream may join fd-less bytes with the next send's.
      await a.send('zero');
      const m0 = await b.recv();
      await a.send('one', [fd]);
      const m1 = await b.recv();
      await a.send('many', new Array(MAX_FDS).fill(fd));
      const m2 = await b.recv({ maxFds: MAX_FDS });
      assert.deepEqual(
        [m0, m1, m2].map((m) => [m.data.toString(), m.fds.length]),
        [
          ['zero', 0],
          ['one', 1],
          ['many', MAX_FDS],
        ],
      );
      assert.equal(target(m1.fds[0]), t.path('f'));
      closeFds(m1.fds);
      closeFds(m2.fds);
      closeSync(fd); // opened by node:fs: closed by node:fs (Deno tracks its own fds)
      await a.close();
      await b.close();
      t.cleanup();
    }));
}

// cluster hands out connections in batches of up to MAX_FDS fds, one message
// after another; on musl <= 1.2.3 libc's sendmsg failed each with ENOMEM.
test(`seqpacket: 8 messages of ${MAX_FDS} fds sent without waiting arrive whole and in order`, () =>
  noLeak(async () => {
    const t = tempDir();
    writeFileSync(t.path('f'), 'content');
    const fd = openSync(t.path('f'), 'r');
    const [a, b] = FdSocket.pair('seqpacket');
    const fds = new Array(MAX_FDS).fill(fd);
    const sent = Promise.all(Array.from({ length: 8 }, (_, i) => a.send(`batch ${i}`, fds)));
    const failed = sent.then(() => new Promise(() => {})); // a send's error, or never
    const got = [];
    for (let i = 0; i < 8; i++) {
      const m = await Promise.race([b.recv({ maxFds: MAX_FDS }), failed]);
      got.push([m.data.toString(), m.fds.length, target(m.fds[MAX_FDS - 1])]);
      closeFds(m.fds);
    }
    await sent;
    assert.deepEqual(
      got,
      Array.from({ length: 8 }, (_, i) => [`batch ${i}`, MAX_FDS, t.path('f')]),
    );
    closeSync(fd);
    await a.close();
    await b.close();
    t.cleanup();
  }));

test("the 'message' event and for await", () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const got = [];
    const done = new Promise((resolve) =>
      b.on('message', (m) => {
        got.push(m.data.toString());
        closeFds(m.fds);
        if (got.length === 3) resolve();
      }),
    );
    for (const s of ['1', '2', '3']) await a.send(s, [0]);
    await done;
    b.removeAllListeners('message');
    assert.deepEqual(got, ['1', '2', '3']);
    for (const s of ['4', '5']) await a.send(s, [0]);
    await a.close();
    const rest = [];
    for await (const m of b) {
      rest.push(m.data.toString());
      closeFds(m.fds);
    }
    assert.deepEqual(rest, ['4', '5']);
    await b.close();
  }));

test('FdServer on a path: connect, accept, sendFd/recvFd (runc wire format), peer credentials, close unlinks', () =>
  noLeak(async () => {
    const t = tempDir();
    const server = await FdServer.listen(t.path('s'));
    const client = await FdSocket.connect(t.path('s'));
    const conn = await server.accept();
    await client.sendFd('stdin', 0);
    const { name, fd } = await conn.recvFd();
    assert.equal(name, 'stdin');
    assert.equal(target(fd), target(0));
    closeFds([fd]);
    assert.equal(conn.peer.pid, process.pid);
    await Promise.all([client.close(), conn.close(), server.close()]);
    assert.equal(existsSync(t.path('s')), false, 'close() unlinked the socket file');
    t.cleanup();
  }));

test('sendFdSync/recvFdSync on a pair', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const fa = a.release();
    const fb = b.release();
    sendFdSync(fa, 'sync', 0);
    const { name, fd } = recvFdSync(fb);
    assert.equal(name, 'sync');
    assert.equal(target(fd), target(0));
    closeFds([fd, fa, fb]);
  }));

test('errors look like Node: TypeError/RangeError before any syscall, EPIPE from a dead peer, ERR_FDPASS_* codes', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    assert.throws(
      () => a.send('x', ['nope']),
      (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
    );
    assert.throws(
      () => a.send('x', new Array(MAX_FDS + 1).fill(0)),
      (e) => e instanceof RangeError,
    );
    await b.close();
    await assert.rejects(a.send('x'), (e) => e instanceof FdPassError && e.code === 'EPIPE' && e.syscall === 'sendmsg');
    await a.close();
    await assert.rejects(a.send('x'), (e) => e.code === 'ERR_FDPASS_CLOSED');
    await assert.rejects(FdSocket.connect('/nonexistent/fdpass.sock'), (e) => e.code === 'ENOENT');
  }));

test('a pending recv settles with end of file when the peer closes; close() closes the fds nobody received', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const pending = b.recv();
    await a.close();
    assert.equal(await pending, null);
    await b.close();
    const [c, d] = FdSocket.pair();
    await c.send('unread', [0, 0, 0]);
    await c.send('unread too', [0]);
    const m = await d.recv({ maxFds: 3 });
    assert.equal(m.fds.length, 3);
    closeFds(m.fds);
    await c.close();
    await d.close(); // closes the fd of the message nobody received (noLeak checks)
  }));

test('an idle socket does not hold the process open; a pending receive does until answered', async () => {
  const idle = await runChild(
    `import { FdSocket } from 'fdpass';
     const [a, b] = FdSocket.pair();
     globalThis.keep = [a, b];
     await a.send('read ahead', [0]);
     console.log('idle');`,
  );
  assert.equal(idle.code, 0, idle.stderr);
  assert.equal(idle.stdout, 'idle\n');
  assert.equal(idle.timedOut, false);
  // The child waits in recv() on a server socket, with no timer of its own;
  // we connect when it says it listens, and answer only once it said that its
  // loop ran with nothing left but the receive (a setImmediate after recv()).
  // Had the receive not held it open, it would have ended there, without
  // printing the answer.
  const t = tempDir();
  try {
    let saidListening, saidIdle;
    const said = { listening: new Promise((r) => (saidListening = r)), idle: new Promise((r) => (saidIdle = r)) };
    const child = runChild(
      `import { FdServer } from 'fdpass';
       const server = await FdServer.listen(${JSON.stringify(t.path('s'))});
       console.log('listening');
       const conn = await server.accept();
       const received = conn.recv();
       setImmediate(() => console.log('idle'));
       const m = await received;
       console.log('got', m.data.toString());
       await conn.close();
       await server.close();`,
      { timeout: 20_000, onLine: (line) => (line === 'listening' ? saidListening() : line === 'idle' && saidIdle()) },
    );
    await Promise.race([said.listening, child]);
    const client = await FdSocket.connect(t.path('s'));
    await Promise.race([said.idle, child]);
    await client.send('answer');
    const r = await child;
    await client.close();
    assert.equal(r.stdout, 'listening\nidle\ngot answer\n', r.stderr);
    assert.equal(r.code, 0);
  } finally {
    t.cleanup();
  }
});

test(
  'a worker that passes fds and is terminated leaves no fd behind',
  async () => {
    const r = await runChild(
      `import { Worker } from 'node:worker_threads';
     import { readdirSync } from 'node:fs';
     await import('fdpass');
     console.log('start');
     const count = () => readdirSync('/proc/self/fd').length;
     const before = count();
     const code = "const { FdSocket } = await import('fdpass'); const { parentPort } = await import('node:worker_threads');" +
       "const [a, b] = FdSocket.pair(); await a.send('x', [0, 0]); const [c, d] = FdSocket.pair(); globalThis.keep = [a, b, c, d.recv()]; parentPort.postMessage('up');";
     const file = new URL('.worker-' + process.pid + '.mjs', import.meta.url);
     (await import('node:fs')).writeFileSync(file, code);
     for (let i = 0; i < 3; i++) {
       const w = new Worker(file);
       await new Promise((res) => w.once('message', res));
       await w.terminate();
     }
     (await import('node:fs')).rmSync(file);
     console.log(count() - before);`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'start\n0\n');
  },
  { only: ['node', 'bun'], why: 'a terminated Deno worker leaves fds behind, some without fdpass too (Deno 2.9)' },
);

// SO_PASSRIGHTS is Linux >= 6.16; qemu-user (FDPASS_CONFORMANCE_EMULATOR, the
// arm64 run of the installed package) does not translate the option and
// answers ENOPROTOOPT as an older kernel would.
const [major, minor] = release().split('.').map(Number);
if ((major > 6 || (major === 6 && minor >= 16)) && !process.env.FDPASS_CONFORMANCE_EMULATOR) {
  test('acceptFds: false: the kernel refuses fds sent to the socket, the sender gets ERR_FDPASS_FDS_REFUSED', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), acceptFds: false });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      await assert.rejects(tx.send('x', [0]), { code: 'ERR_FDPASS_FDS_REFUSED', errno: -1, syscall: 'sendmsg' });
      await tx.send('plain');
      assert.deepEqual((await rx.recv()).fds, []);
      await tx.close();
      await rx.close();
      t.cleanup();
    }));
} else {
  test('acceptFds: false without SO_PASSRIGHTS (Linux < 6.16, or qemu-user): ERR_FDPASS_UNSUPPORTED_KERNEL', () =>
    noLeak(async () => {
      const t = tempDir();
      assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), acceptFds: false }), { code: 'ERR_FDPASS_UNSUPPORTED_KERNEL' });
      t.cleanup();
    }));
}

// SO_PASSPIDFD (SCM_PIDFD) is Linux >= 6.5; qemu-user does not translate it
// (ENOPROTOOPT, as for SO_PASSRIGHTS above).
if ((major > 6 || (major === 6 && minor >= 5)) && !process.env.FDPASS_CONFORMANCE_EMULATOR) {
  test("passPidfd: true: each message names its sender (message.pidfd); unreceived ones' pidfds close with the socket", () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true });
      const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
      await tx.send('one', [0]);
      await tx.send('two');
      const m = await rx.recv();
      assert.equal(m.data.toString(), 'one');
      closeFds(m.fds);
      assert.equal(m.pidfd.pid, process.pid);
      assert.match(target(m.pidfd.fd), /pidfd/);
      m.pidfd.close();
      // 'two' stays buffered: its pidfd is closed with the socket (noLeak).
      await tx.close();
      await rx.close();
      t.cleanup();
    }));
} else {
  test('passPidfd: true without SO_PASSPIDFD (Linux < 6.5, or qemu-user): ERR_FDPASS_UNSUPPORTED_KERNEL', () =>
    noLeak(async () => {
      const t = tempDir();
      assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), passPidfd: true }), { code: 'ERR_FDPASS_UNSUPPORTED_KERNEL' });
      t.cleanup();
    }));
}
