// FdLike: users hand over what they hold; received fds are close-on-exec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, connect, type Server } from 'node:net';
import { createSocket } from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { FdSocket } from 'fdpass';
import { noLeak, tempDir } from './helpers.js';

test('net.Socket, net.Server, dgram.Socket, FileHandle and FdSocket are FdLike', () =>
  noLeak(async () => {
    const t = tempDir();
    writeFileSync(t.path('f'), 'fh');
    const conns: import('node:net').Socket[] = [];
    const server: Server = createServer((s) => conns.push(s));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    const { port } = server.address() as { port: number };
    const client = connect(port, '127.0.0.1');
    await new Promise<void>((res) => client.on('connect', () => res()));
    const udp = createSocket('udp4');
    await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
    const fh = await open(t.path('f'), 'r');
    const [a, b] = FdSocket.pair();
    const [x, y] = FdSocket.pair();

    const holders = [client, server, udp, fh, x];
    await a.send('all', holders);
    const m = (await b.recv())!;
    assert.equal(m.fds.length, holders.length);
    const expected = [
      (client as unknown as { _handle: { fd: number } })._handle.fd,
      (server as unknown as { _handle: { fd: number } })._handle.fd,
      -1,
      fh.fd,
      x.fd,
    ];
    for (let i = 0; i < holders.length; i++) {
      if (expected[i]! >= 0) assert.equal(fstatSync(m.fds[i]!).ino, fstatSync(expected[i]!).ino, `holder ${i}`);
      else assert.ok(fstatSync(m.fds[i]!).isSocket());
      closeSync(m.fds[i]!);
    }
    await fh.close();
    assert.throws(() => a.send('closed', [fh]), { code: 'EBADF' });
    assert.throws(() => a.send('x', [{ fd: 'nope' } as never]), { name: 'TypeError' });
    const closed = [client, ...conns].map((s) => new Promise((res) => s.on('close', res)));
    client.destroy();
    conns.forEach((s) => s.destroy());
    await Promise.all(closed);
    await new Promise<void>((res) => udp.close(() => res()));
    await new Promise((res) => server.close(res));
    await Promise.all([a.close(), b.close(), x.close(), y.close()]);
    t.cleanup();
  }));

test('received fds are close-on-exec: a child process does not inherit them', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const fd = openSync('/dev/null', 'r');
    await a.send('x', [fd]);
    const m = (await b.recv())!;
    const got = m.fds[0]!;
    const inherited = spawnSync('sh', ['-c', `test -e /proc/self/fd/${got} && echo open || echo closed`])
      .stdout.toString()
      .trim();
    assert.equal(inherited, 'closed');
    // The control: an fd without close-on-exec is inherited.
    const plain = spawnSync('sh', ['-c', `test -e /proc/self/fd/0 && echo open || echo closed`]).stdout.toString().trim();
    assert.equal(plain, 'open');
    closeSync(got);
    closeSync(fd);
    await Promise.all([a.close(), b.close()]);
  }));
