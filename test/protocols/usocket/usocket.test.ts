// usocket's API as dbus-next and other usocket users call it.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, existsSync, fstatSync, openSync, writeFileSync } from 'node:fs';
import { UServer, USocket } from 'fdpass/usocket';
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
        const [[conn]] = (await Promise.all([once(server, 'connection'), once(client, 'connect')])) as [[USocket], unknown];
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
        if (kind === 'path') assert.equal(existsSync(path), false, 'close() unlinks the socket file');
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
      const [[conn]] = (await Promise.all([once(server, 'connection'), once(s, 'connect')])) as [[USocket], unknown];
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
      await once(client, 'connect'); // the kernel accepted it into the backlog
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
});
