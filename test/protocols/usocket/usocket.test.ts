// usocket's API as dbus-next and other usocket users call it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, existsSync, fstatSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import { FdSocket } from 'fdpass';
import { FdStream, UServer, USocket } from 'fdpass/usocket';
import { noLeak, tempDir } from '../../helpers.js';
import { readWhenReady } from '../../transport/stream/util.js';

async function closed(s: USocket): Promise<void> {
  if (!s.closed) await once(s, 'close');
}

describe('USocket and UServer', () => {
  for (const kind of ['path', 'abstract'] as const) {
    test(`new USocket({ path }) to a UServer on a ${kind}: connect, write({ data, fds }), read(n), read(n, null), end`, () =>
      noLeak(async () => {
        const t = tempDir();
        const file = t.path('f.txt');
        writeFileSync(file, 'shared');
        const fd = openSync(file, 'r');
        const path = kind === 'path' ? t.path('u.sock') : `\0fdpass-usocket-test-${process.pid}`;
        const server = new UServer();
        let listened = false;
        server.listen(path, () => (listened = true));
        await once(server, 'listening');
        assert.equal(listened, true);
        assert.equal(server.listening, true);
        if (kind === 'path') assert.equal(existsSync(path), true);

        let connected = false;
        const client = new USocket({ path }, () => (connected = true));
        client.setNoDelay();
        const [[conn]] = (await Promise.all([once(server, 'connection'), once(client, 'connected')])) as [[USocket], unknown];
        assert.equal(connected, true);
        assert.ok(conn instanceof USocket);

        // dbus-next's habits: a header read with read(n), the rest with read(n, null).
        client.write({ data: Buffer.from('HEADbody'), fds: [fd] });
        client.write(Buffer.from('next'));
        const head = await readWhenReady(conn, 4);
        assert.equal(head.toString(), 'HEAD');
        const body = await readWhenReady(conn, 4, null);
        assert.equal(body.data!.toString(), 'body');
        assert.equal(body.fds.length, 1);
        assert.equal(fstatSync(body.fds[0]!).ino, fstatSync(fd).ino);
        closeSync(body.fds[0]!);
        const next = await readWhenReady(conn, 4, null);
        assert.deepEqual([next.data!.toString(), next.fds], ['next', []]);

        // end() half-closes; the peer sees 'end', ends too, and both close.
        const ended = once(conn, 'end');
        conn.resume();
        client.resume();
        client.end();
        await ended;
        await Promise.all([closed(client), closed(conn)]);

        server.close();
        await once(server, 'close');
        // As usocket's close(): the socket file stays (its users unlink it).
        if (kind === 'path') assert.equal(existsSync(path), true, 'close() leaves the socket file');
        closeSync(fd);
        t.cleanup();
      }));
  }

  test("a USocket to nowhere emits 'error' and 'close'; destroy() closes at once", () =>
    noLeak(async () => {
      const t = tempDir();
      const s = new USocket({ path: t.path('nobody') });
      const [err] = (await once(s, 'error').catch((e: unknown) => [e])) as [Error & { code: string }];
      assert.equal(err.code, 'ENOENT');
      await closed(s);
      const d = new USocket({ path: t.path('nobody') });
      d.destroy();
      await closed(d);
      t.cleanup();
    }));

  test('new USocket({ fd }) adopts a connected socket; connect(path) connects later', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('u.sock');
      const server = new UServer();
      server.listen({ path, backlog: 4 });
      await once(server, 'listening');
      const s = new USocket();
      s.connect(path);
      const [[conn]] = (await Promise.all([once(server, 'connection'), once(s, 'connected')])) as [[USocket], unknown];
      // Pass the connection's fd to a new USocket, as usocket's { fd } did.
      s.write({ data: 'x', fds: [conn.fd] });
      const got = await readWhenReady(conn, 1, null);
      const adopted = new USocket({ fd: got.fds[0]! });
      adopted.write('through the adopted fd');
      assert.equal((await readWhenReady(s, 22)).toString(), 'through the adopted fd');
      for (const u of [s, conn, adopted]) u.destroy();
      await Promise.all([s, conn, adopted].map(closed));
      server.close();
      await once(server, 'close');
      t.cleanup();
    }));

  test('UServer.pause() stops accepting until resume()', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('u.sock');
      const server = new UServer();
      server.pause();
      server.listen(path);
      await once(server, 'listening');
      let accepted = 0;
      server.on('connection', (c: USocket) => {
        accepted++;
        c.destroy();
      });
      const client = new USocket({ path });
      await once(client, 'connected'); // the kernel accepted it into the backlog
      for (let i = 0; i < 10; i++) await new Promise((res) => setImmediate(res));
      assert.equal(accepted, 0);
      server.resume();
      await once(server, 'connection');
      assert.equal(accepted, 1);
      client.destroy();
      await closed(client);
      server.close();
      await once(server, 'close');
      t.cleanup();
    }));
  test("connect({ fd: -1 }) emits 'error' (EBADF) and 'close', not a throw; the USocket then connects to a path", () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('u.sock');
      const server = new UServer();
      server.listen(path);
      await once(server, 'listening');
      const s = new USocket();
      let called = 0;
      s.connect({ fd: -1 }, () => called++);
      const [err] = (await once(s, 'error')) as [Error & { code: string; errno: number; syscall: string }];
      assert.deepEqual([err.code, err.errno, err.syscall], ['EBADF', -9, 'fcntl']);
      assert.equal(s.destroyed, false);
      assert.equal(called, 0, 'the callback waits for a connection');
      // A regular file's fd is no socket: 'error' too, and the fd stays the caller's.
      const file = t.path('f');
      writeFileSync(file, 'x');
      const fileFd = openSync(file, 'r');
      s.connect({ fd: fileFd });
      const [notSocket] = (await once(s, 'error')) as [Error & { code: string }];
      assert.equal(notSocket.code, 'ENOTSOCK');
      assert.equal(fstatSync(fileFd).isFile(), true);
      closeSync(fileFd);
      // The same USocket connects afterwards; the callback listens for 'connected'.
      const [[conn]] = (await Promise.all([
        once(server, 'connection'),
        once(
          s.connect(path, () => called++),
          'connected',
        ),
      ])) as [[USocket], unknown];
      assert.equal(called, 1);
      s.write('ping');
      assert.equal((await readWhenReady(conn, 4)).toString(), 'ping');
      for (const u of [s, conn]) u.destroy();
      await Promise.all([s, conn].map(closed));
      server.close();
      t.cleanup();
    }));

  test('connect({ fd }) adopts a connected socket with no event; new USocket(path) takes a bare path', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('u.sock');
      const server = new UServer();
      server.listen(path);
      await once(server, 'listening');
      const client = new USocket(path);
      const [[conn]] = (await Promise.all([once(server, 'connection'), once(client, 'connected')])) as [[USocket], unknown];
      client.write({ data: 'x', fds: [conn.fd] });
      const got = await readWhenReady(conn, 1, null);
      const adopted = new USocket();
      let events = 0;
      adopted.on('connected', () => events++);
      assert.equal(adopted.connect({ fd: got.fds[0]! }), adopted);
      assert.equal(adopted.fd, got.fds[0]);
      adopted.write('via connect({ fd })');
      assert.equal((await readWhenReady(client, 19)).toString(), 'via connect({ fd })');
      assert.equal(events, 0);
      assert.throws(() => adopted.connect(path), { code: 'EISCONN' });
      for (const u of [client, conn, adopted]) u.destroy();
      await Promise.all([client, conn, adopted].map(closed));
      server.close();
      t.cleanup();
    }));

  test("UServer.close() leaves the socket file, as usocket's; a new UServer replaces it", () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('u.sock');
      const first = new UServer();
      first.listen(path);
      await once(first, 'listening');
      // A live listener's file is never taken over: 'error' EADDRINUSE.
      const rival = new UServer();
      rival.listen(path);
      const [busy] = (await once(rival, 'error')) as [Error & { code: string }];
      assert.equal(busy.code, 'EADDRINUSE');
      first.close();
      await once(first, 'close');
      assert.equal(existsSync(path), true);
      const second = new UServer();
      second.listen({ path, backlog: 2 }, () => undefined);
      await once(second, 'listening');
      const c = new USocket({ path });
      await Promise.all([once(c, 'connected'), once(second, 'connection').then(([s]) => (s as USocket).destroy())]);
      c.destroy();
      await closed(c);
      second.close();
      await once(second, 'close');
      unlinkSync(path);
      t.cleanup();
    }));

  test('read(n, count) waits for count fds, as usocket; unshift(chunk, fds) puts both back; destroy closes what is left', () =>
    noLeak(async () => {
      const [x, y] = FdSocket.pair('stream');
      const a = FdStream.fromSocket(x);
      const u = new USocket({ fd: y.release() });
      const file = openSync('/dev/null', 'r');
      a.write({ data: 'one', fds: [file] });
      await readWhenReady(u, 3, 1).then((m) => {
        assert.equal(m.data!.toString(), 'one');
        u.unshift(m.data, m.fds);
      });
      assert.equal(u.read(3, 2), null, 'one fd arrived, two asked for');
      const again = u.read(3, 1)!;
      assert.equal(again.data!.toString(), 'one');
      assert.equal(again.fds.length, 1);
      // Put back and left: the USocket closes it when destroyed (noLeak checks).
      u.unshift(null, again.fds);
      assert.equal(u.pendingFds, 1);
      closeSync(file);
      a.destroy();
      u.destroy();
      await Promise.all([closed(u), once(a, 'close')]);
    }));
});
