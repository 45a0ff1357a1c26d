// Subsets of fdpass/stream, fdpass/runc, fdpass/systemd and fdpass/handoff,
// against peers written with fdpass itself or real tools where the protocol
// needs them (systemd-socket-activate).
import assert from 'node:assert/strict';
import { existsSync, readlinkSync } from 'node:fs';
import { FdSocket, closeFds } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { listenConsoleSocket, listenPidfdSocket, listenSeccompAgent, sendConsole, sendContainerProcessState, sendPidfd } from 'fdpass/runc';
import { notify, storeFds, watchdog } from 'fdpass/systemd';
import { USocket, UServer } from 'fdpass/usocket';
import { noLeak, runChild, tempDir, test, which } from './harness.mjs';

const target = (fd) => readlinkSync(`/proc/self/fd/${fd}`);

test("stream: docs/stream.md's FdStream example: bytes in order, an fd with the bytes it was written with", () =>
  noLeak(async () => {
    const [a, b] = FdStream.pair();
    a.write('HDR:');
    a.write({ data: 'file', fds: [0] });
    await new Promise((resolve) => b.once('readable', resolve));
    const header = b.read(4);
    let got = b.read(4, null);
    while (got === null) {
      await new Promise((resolve) => b.once('readable', resolve));
      got = b.read(4, null);
    }
    assert.equal(header.toString(), 'HDR:');
    assert.equal(got.data.toString(), 'file');
    assert.equal(got.fds.length, 1);
    assert.equal(target(got.fds[0]), target(0));
    closeFds(got.fds);
    await Promise.all([new Promise((r) => a.destroy().once('close', r)), new Promise((r) => b.destroy().once('close', r))]);
  }));

test("runc: a console socket receives runc's message (name, pty master)", () =>
  noLeak(async () => {
    const t = tempDir();
    const listener = await listenConsoleSocket(t.path('tty.sock'));
    await sendConsole(t.path('tty.sock'), '/dev/pts/ptmx', 0);
    const got = await listener.next();
    assert.equal(got.name, '/dev/pts/ptmx');
    assert.equal(target(got.fd), target(0));
    closeFds([got.fd]);
    await listener.close();
    t.cleanup();
  }));

test('runc: a seccomp agent receives the container state and its fds by name', () =>
  noLeak(async () => {
    const t = tempDir();
    const agent = await listenSeccompAgent(t.path('agent.sock'));
    const state = {
      ociVersion: '1.0.2',
      fds: ['seccompFd'],
      pid: process.pid,
      metadata: 'conformance',
      state: { ociVersion: '1.0.2', id: 'demo', status: 'creating', pid: process.pid, bundle: '/tmp/bundle' },
    };
    await sendContainerProcessState(t.path('agent.sock'), state, [0]);
    const got = await agent.next();
    assert.equal(got.state.state.id, 'demo');
    assert.equal(got.state.metadata, 'conformance');
    assert.equal(target(got.fds.seccompFd), target(0));
    closeFds([got.fds.seccompFd]);
    await agent.close();
    t.cleanup();
  }));

test("runc: a pidfd socket receives runc's kind and pidfd", () =>
  noLeak(async () => {
    const t = tempDir();
    const listener = await listenPidfdSocket(t.path('pidfd.sock'));
    await sendPidfd(t.path('pidfd.sock'), 'standard', 0);
    const got = await listener.next();
    assert.equal(got.kind, 'standard');
    closeFds([got.pidfd]);
    await listener.close();
    t.cleanup();
  }));

test('systemd: notify and storeFds send one datagram with the state and the fds to $NOTIFY_SOCKET', () =>
  noLeak(async () => {
    const t = tempDir();
    const manager = FdSocket.bindDatagram(t.path('notify'));
    const saved = process.env.NOTIFY_SOCKET;
    process.env.NOTIFY_SOCKET = t.path('notify');
    try {
      assert.equal(await notify({ READY: 1, STATUS: 'serving' }), true);
      const ready = await manager.recv();
      assert.deepEqual(ready.data.toString().split('\n').sort(), ['READY=1', 'STATUS=serving']);
      assert.equal(await storeFds('web', [0]), true);
      const store = await manager.recv();
      assert.deepEqual(store.data.toString().split('\n').sort(), ['FDNAME=web', 'FDSTORE=1']);
      assert.equal(store.fds.length, 1);
      closeFds(store.fds);
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
      await manager.close();
      t.cleanup();
    }
  }));

test('systemd: watchdog() pings WATCHDOG=1 at half of WATCHDOG_USEC until closed', () =>
  noLeak(async () => {
    const t = tempDir();
    const manager = FdSocket.bindDatagram(t.path('notify'));
    const saved = {
      NOTIFY_SOCKET: process.env.NOTIFY_SOCKET,
      WATCHDOG_USEC: process.env.WATCHDOG_USEC,
      WATCHDOG_PID: process.env.WATCHDOG_PID,
    };
    Object.assign(process.env, { NOTIFY_SOCKET: t.path('notify'), WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid) });
    try {
      const wd = watchdog();
      assert.deepEqual([wd.active, wd.interval], [true, 20]);
      for (let i = 0; i < 3; i++) assert.equal((await manager.recv()).data.toString(), 'WATCHDOG=1');
      wd.close();
      assert.equal(wd.active, false);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await manager.close();
      t.cleanup();
    }
  }));

test("usocket: connect({ fd: -1 }) is an 'error' event, then the same USocket connects; close() leaves the socket file", () =>
  noLeak(async () => {
    const t = tempDir();
    const server = new UServer();
    await new Promise((resolve) => server.listen(t.path('u'), resolve));
    const s = new USocket();
    const failed = new Promise((resolve) => s.once('error', resolve));
    s.connect({ fd: -1 });
    assert.equal((await failed).code, 'EBADF');
    const accepted = new Promise((resolve) => server.once('connection', resolve));
    await new Promise((resolve) => s.connect(t.path('u'), resolve));
    const conn = await accepted;
    s.write({ data: 'hi', fds: [0] });
    const got = await new Promise((resolve) => {
      const take = () => {
        const m = conn.read(2, 1);
        if (m) resolve(m);
        else conn.once('readable', take);
      };
      take();
    });
    assert.equal(got.data.toString(), 'hi');
    closeFds(got.fds);
    s.destroy();
    conn.destroy();
    await Promise.all([s, conn].map((x) => (x.closed ? null : new Promise((r) => x.once('close', r)))));
    server.close();
    assert.equal(existsSync(t.path('u')), true);
    t.cleanup();
  }));

const activate = which('systemd-socket-activate');
/** What the run set that the activated child needs (see the wrap below). */
const passOn = ['FDPASS_NATIVE', 'LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS'];
test(
  'systemd: socket activation by the real systemd-socket-activate: listenFds gives the named listener, FdServer.fromFd serves it',
  async () => {
    const t = tempDir();
    try {
      // systemd-socket-activate says when it listens (on stderr), and starts
      // the child when we connect.
      let saidListening;
      const listening = new Promise((r) => (saidListening = r));
      const child = runChild(
        `import { FdServer } from 'fdpass';
         import { listenFds } from 'fdpass/systemd';
         const fds = listenFds();
         console.log(JSON.stringify(fds.map((f) => f.name)));
         const server = FdServer.fromFd(fds[0].fd);
         const conn = await server.accept();
         const m = await conn.recv();
         console.log('got', m.data.toString());
         await conn.close();
         await server.close();`,
        {
          // systemd-socket-activate passes the child no environment but
          // what -E names: the addon this run forces (the musl prebuild
          // under Bun's musl build, the ASan build under npm run test:asan,
          // with the sanitizer's runtime preloaded) must reach the child too.
          wrap: (argv) => [
            activate,
            '-l',
            t.path('s'),
            '--fdname=web',
            ...passOn.filter((name) => process.env[name] !== undefined).flatMap((name) => ['-E', name]),
            ...argv,
          ],
          onLine: (line, from) => from === 'stderr' && line.startsWith('Listening on ') && saidListening(),
        },
      );
      await Promise.race([listening, child]);
      const client = await FdSocket.connect(t.path('s'));
      await client.send('activated');
      const r = await child;
      await client.close();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '["web"]\ngot activated\n');
    } finally {
      t.cleanup();
    }
  },
  activate ? {} : { needs: 'systemd-socket-activate not found on PATH: apt-get install -y systemd' },
);
