import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, writeFileSync, closeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { FdServer, FdSocket } from 'fdpass';
import type { FdPassError, PeerCredentials } from 'fdpass';
import { ioTurns, noLeak, tempDir, runPython } from '../helpers.js';
import { needs } from '../tools.js';

describe('FdServer', () => {
  test('listens with mode 0600 by default, accepts, and close() unlinks the file', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('s.sock');
      const server = await FdServer.listen(path);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.ok(statSync(path).isSocket());
      const [client, conn] = await Promise.all([FdSocket.connect(path), server.accept()]);
      assert.equal(conn.peer.pid, process.pid);
      await client.sendFd('x', 0);
      const got = await conn.recvFd();
      closeSync(got.fd);
      await Promise.all([client.close(), conn.close()]);
      await server.close();
      assert.equal(existsSync(path), false);
      await assert.rejects(server.accept(), { code: 'ERR_FDPASS_CLOSED' });
      t.cleanup();
    }));

  test('mode option is applied before listen', async () => {
    const t = tempDir();
    const server = await FdServer.listen({ path: t.path('m.sock'), mode: 0o660 });
    assert.equal(statSync(t.path('m.sock')).mode & 0o777, 0o660);
    await server.close();
    t.cleanup();
  });

  test('a live socket file is never taken over; a stale one is replaced', needs('python3'), async () => {
    const t = tempDir();
    const path = t.path('live.sock');
    const live = await FdServer.listen(path);
    await assert.rejects(FdServer.listen(path), (e: FdPassError) => e.code === 'EADDRINUSE' && e.syscall === 'bind');
    assert.ok(existsSync(path));
    // The first server still works.
    const [c, s] = await Promise.all([FdSocket.connect(path), live.accept()]);
    await Promise.all([c.close(), s.close()]);
    await live.close();

    // A stale file: bound by a process that died without unlinking it.
    const stale = t.path('stale.sock');
    runPython('import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()', [stale]);
    assert.ok(statSync(stale).isSocket());
    await assert.rejects(FdSocket.connect(stale), { code: 'ECONNREFUSED' });
    const replaced = await FdServer.listen(stale);
    const [c2, s2] = await Promise.all([FdSocket.connect(stale), replaced.accept()]);
    await Promise.all([c2.close(), s2.close(), replaced.close()]);

    // A regular file is not a socket: never unlinked.
    const file = t.path('file');
    writeFileSync(file, 'keep');
    await assert.rejects(FdServer.listen(file), { code: 'EADDRINUSE' });
    assert.ok(existsSync(file));
    t.cleanup();
  });

  test('allow() refuses by SO_PEERCRED before anything is read', needs('python3', 'root'), async () => {
    const t = tempDir();
    const { chmodSync } = await import('node:fs');
    chmodSync(t.dir, 0o711);
    const path = t.path('allow.sock');
    const seen: PeerCredentials[] = [];
    const server = await FdServer.listen({
      path,
      mode: 0o666,
      allow: (peer) => {
        seen.push(peer);
        return peer.uid === 0;
      },
    });
    // A client of another uid (we are root in CI) connects and waits for data.
    const child = spawn(
      'python3',
      [
        '-c',
        'import socket,sys\ns=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\ntry: print(len(s.recv(10)))\nexcept ConnectionResetError: print("reset")',
        path,
      ],
      { uid: 65534, gid: 65534 },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const accepted: FdSocket[] = [];
    server.on('connection', (s) => accepted.push(s));
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    assert.equal(code, 0);
    assert.match(out.trim(), /^(0|reset)$/, 'the refused client is disconnected');
    assert.equal(accepted.length, 0);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.uid, 65534);
    // Our own uid is admitted.
    const admitted = new Promise<FdSocket>((res) => server.once('connection', res));
    const c = await FdSocket.connect(path);
    assert.equal((await admitted).peer.uid, 0);
    await Promise.all([c.close(), accepted[0]!.close(), server.close()]);
    t.cleanup();
  });

  test('abstract names: no file, same uid only by default', needs('python3', 'root'), async () => {
    const name = `fdpass-test-${process.pid}-${Date.now()}`;
    const server = await FdServer.listen({ abstract: name, type: 'seqpacket' });
    assert.equal(server.abstract, name);
    const [c, s] = await Promise.all([FdSocket.connect({ abstract: name, type: 'seqpacket' }), server.accept()]);
    assert.equal(c.type, 'seqpacket');
    await c.send('abs', [0]);
    const m = await s.recv();
    assert.equal(m!.data.toString(), 'abs');
    m!.fds.forEach((fd) => closeSync(fd));
    const other = spawn(
      'python3',
      [
        '-c',
        'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect("\\0"+sys.argv[1]); print(len(s.recv(10)))',
        name,
      ],
      { uid: 65534, gid: 65534 },
    );
    let out = '';
    other.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const pending = server.accept();
    assert.equal(await new Promise((res) => other.on('exit', res)), 0);
    assert.equal(out.trim(), '0', 'another uid is refused on an abstract name');
    await Promise.all([c.close(), s.close(), server.close()]);
    await assert.rejects(pending, { code: 'ERR_FDPASS_CLOSED' });
  });

  test('for await over connections ends when the server closes', async () => {
    const t = tempDir();
    const path = t.path('iter.sock');
    const server = await FdServer.listen(path);
    const clients = await Promise.all([1, 2, 3].map(() => FdSocket.connect(path)));
    const got: FdSocket[] = [];
    for await (const s of server) {
      got.push(s);
      if (got.length === 3) break;
    }
    const after = (async () => {
      const rest: FdSocket[] = [];
      for await (const s of server) rest.push(s);
      return rest;
    })();
    await ioTurns(); // its accept waits: nothing more is in the backlog
    await server.close();
    assert.deepEqual(await after, []);
    await Promise.all([...clients, ...got].map((s) => s.close()));
    t.cleanup();
  });

  test('connect errors: ENOENT, ECONNREFUSED, missing folder, path too long', async () => {
    const t = tempDir();
    await assert.rejects(FdSocket.connect(t.path('nothing.sock')), (e: FdPassError) => e.code === 'ENOENT' && e.syscall === 'connect');
    await assert.rejects(FdServer.listen(t.path('no/such/dir/x.sock')), { code: 'ENOENT' });
    assert.throws(() => FdSocket.connect('/tmp/' + 'x'.repeat(200)), { code: 'ERR_FDPASS_PATH_TOO_LONG' });
    assert.throws(() => FdServer.listen({ abstract: 'a\0b' }), { name: 'TypeError' });
    assert.throws(() => FdServer.listen({ path: 'x', type: 'dgram' }), { name: 'TypeError' });
    t.cleanup();
  });

  test('relative paths work and close() unlinks the right file after chdir', async () => {
    const t = tempDir();
    const cwd = process.cwd();
    process.chdir(t.dir);
    try {
      const server = await FdServer.listen('rel.sock');
      process.chdir('/');
      const c = await FdSocket.connect(t.path('rel.sock'));
      const s = await server.accept();
      await Promise.all([c.close(), s.close()]);
      await server.close();
      assert.equal(existsSync(t.path('rel.sock')), false);
    } finally {
      process.chdir(cwd);
      t.cleanup();
    }
  });

  test('fromFd adopts a listening socket received from a peer', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('adopt.sock');
      const original = await FdServer.listen(path);
      // Pass the listening socket over a socketpair, as a handoff would.
      const [a, b] = FdSocket.pair();
      await a.sendFd('listener', original.fd);
      const { fd } = await b.recvFd();
      const adopted = FdServer.fromFd(fd);
      assert.equal(adopted.type, 'stream');
      // A client connects while the path is there; it waits in the backlog.
      const client = await FdSocket.connect(path);
      await original.close(); // unlinks the path; the adopted fd still listens
      assert.equal(existsSync(path), false);
      // The adopted server accepts it, and the connection carries data and fds.
      const accepted = await adopted.accept();
      await client.send('through the adopted listener', [client.fd]);
      const m = (await accepted.recv())!;
      assert.equal(m.data.toString(), 'through the adopted listener');
      assert.equal(m.fds.length, 1);
      for (const f of m.fds) closeSync(f);
      await Promise.all([client.close(), accepted.close()]);
      assert.throws(() => FdServer.fromFd(a.fd), { code: 'ERR_FDPASS_BAD_SOCKET' });
      assert.throws(() => FdSocket.fromFd(adopted.fd), { code: 'ERR_FDPASS_BAD_SOCKET' });
      assert.throws(
        () => FdServer.fromFd(0),
        (e: FdPassError) => e.code === 'ENOTSOCK' || e.code === 'ERR_FDPASS_BAD_SOCKET',
      );
      await Promise.all([a.close(), b.close()]);
      await adopted.close();
      t.cleanup();
    }));
});
