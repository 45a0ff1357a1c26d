// Subsets of fdpass/stream, fdpass/runc, fdpass/systemd and fdpass/handoff,
// against peers written with fdpass itself or real tools where the protocol
// needs them (systemd-socket-activate).
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { FdSocket, closeFds } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { listenConsoleSocket, listenPidfdSocket, listenSeccompAgent, sendConsole, sendContainerProcessState, sendPidfd } from 'fdpass/runc';
import { notify, storeFds } from 'fdpass/systemd';
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

const activate = which('systemd-socket-activate');
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
          wrap: (argv) => [activate, '-l', t.path('s'), '--fdname=web', ...argv],
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
