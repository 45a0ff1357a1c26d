// FdLike: users hand over what they hold; received fds are close-on-exec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, connect, type Server } from 'node:net';
import { createSocket } from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { FdSocket, closeFds } from 'fdpass';
import { noLeak, tempDir } from '../helpers.js';

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
    // Finding a dgram.Socket's fd must not read its deprecated _handle (DEP0112).
    const warnings: Error[] = [];
    const onWarning = (w: Error): number => warnings.push(w);
    process.on('warning', onWarning);
    await a.send('all', holders);
    await new Promise((res) => setImmediate(res));
    process.off('warning', onWarning);
    assert.deepEqual(
      warnings.map((w) => w.message),
      [],
    );
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

test('closeFds closes every fd in one call, throws EBADF after closing the rest, checks numbers first', () =>
  noLeak(async () => {
    const [a, b] = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
    closeFds([a, b]);
    assert.throws(() => fstatSync(a), { code: 'EBADF' });
    assert.throws(() => fstatSync(b), { code: 'EBADF' });
    closeFds([]);

    // A bad number in the middle: the others are closed, then EBADF.
    const [c, d] = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
    const notOpen = 999_999;
    assert.throws(
      () => closeFds([c, notOpen, d]),
      (e: Error & { code?: string; syscall?: string; errno?: number }) => {
        assert.equal(e.code, 'EBADF');
        assert.equal(e.syscall, 'close');
        assert.equal(e.errno, -9);
        return true;
      },
    );
    assert.throws(() => fstatSync(c), { code: 'EBADF' });
    assert.throws(() => fstatSync(d), { code: 'EBADF' });

    // Arguments are checked before anything is closed.
    const e = openSync('/dev/null', 'r');
    assert.throws(() => closeFds([e, -1]), RangeError);
    assert.throws(() => closeFds([e, 'x' as unknown as number]), TypeError);
    assert.throws(() => closeFds(e as unknown as number[]), TypeError);
    fstatSync(e); // still open
    // More than one message's worth (253) at once.
    const many = Array.from({ length: 300 }, () => openSync('/dev/null', 'r'));
    closeFds([e, ...many]);
    for (const fd of [e, ...many]) assert.throws(() => fstatSync(fd), { code: 'EBADF' });
  }));
