// What a program does with a received fd, written the way docs/install.md tells
// a Deno user to (it runs the same on Node and Bun): close it with closeFds,
// pass it on with fdpass, use sockets through fdpass's own wrappers, read a
// file or pipe by reopening /proc/self/fd/N with node:fs.
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { FdServer, FdSocket, closeFds } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { noLeak, tempDir, test } from './harness.mjs';

/** A file of ours, sent over a fresh pair and received back: [received fd, cleanup]. */
async function receiveFile(content) {
  const t = tempDir();
  writeFileSync(t.path('f'), content);
  const mine = openSync(t.path('f'), 'r');
  const [a, b] = FdSocket.pair();
  await a.sendFd('file', mine);
  closeSync(mine); // node:fs opened it: node:fs closes it
  const { fd } = await b.recvFd();
  await a.close();
  await b.close();
  return [fd, t];
}

test(
  'Deno: node:fs refuses a received fd with EBADF (the reason for the rest)',
  async () => {
    const [fd, t] = await receiveFile('x');
    assert.throws(() => readSync(fd, Buffer.alloc(1)), { code: 'EBADF' });
    assert.throws(() => closeSync(fd), { code: 'EBADF' });
    closeFds([fd]);
    t.cleanup();
  },
  { only: ['deno'], why: 'Node and Bun read received fds with node:fs' },
);

test('closeFds closes received fds', () =>
  noLeak(async () => {
    const [fd, t] = await receiveFile('x');
    closeFds([fd]);
    t.cleanup();
  }));

test('a received file is read by reopening /proc/self/fd/N with node:fs, then closed with closeFds', () =>
  noLeak(async () => {
    const [fd, t] = await receiveFile('hello from a received fd');
    assert.equal(readFileSync(`/proc/self/fd/${fd}`, 'utf8'), 'hello from a received fd');
    closeFds([fd]);
    t.cleanup();
  }));

test('a received fd is passed on with fdpass, and arrives as the same file', () =>
  noLeak(async () => {
    const [fd, t] = await receiveFile('passed on');
    const [c, d] = FdSocket.pair();
    await c.send('again', [fd]);
    closeFds([fd]); // the kernel holds its own reference while in flight
    const m = await d.recv();
    assert.equal(readFileSync(`/proc/self/fd/${m.fds[0]}`, 'utf8'), 'passed on');
    closeFds(m.fds);
    await c.close();
    await d.close();
    t.cleanup();
  }));

test('a received socket is used through FdSocket.fromFd and FdStream.fromFd', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const [x, y] = FdSocket.pair();
    const [s1, s2] = FdSocket.pair();
    await a.send('fds', [x.fd, s1.fd]);
    const m = await b.recv();
    await Promise.all([x.close(), s1.close(), a.close(), b.close()]);
    const sock = FdSocket.fromFd(m.fds[0]);
    await y.send('via fromFd', [0]);
    const got = await sock.recv();
    assert.equal(got.data.toString(), 'via fromFd');
    closeFds(got.fds);
    const stream = FdStream.fromFd(m.fds[1]);
    const chunk = new Promise((resolve) => stream.once('data', resolve));
    await s2.send('via FdStream');
    assert.equal((await chunk).toString(), 'via FdStream');
    await new Promise((resolve) => stream.destroy().once('close', resolve));
    await Promise.all([sock.close(), y.close(), s2.close()]);
  }));

test('a received listener is served through FdServer.fromFd', () =>
  noLeak(async () => {
    const t = tempDir();
    const listener = await FdServer.listen(t.path('l'));
    const [a, b] = FdSocket.pair();
    await a.send('listener', [listener.fd]);
    const m = await b.recv();
    const server = FdServer.fromFd(m.fds[0]);
    const client = await FdSocket.connect(t.path('l'));
    const conn = await server.accept();
    await client.send('hi');
    assert.equal((await conn.recv()).data.toString(), 'hi');
    await Promise.all([client.close(), conn.close(), server.close(), a.close(), b.close()]);
    await listener.close();
    t.cleanup();
  }));

test(
  "Deno: the helpers that hand an fd to node:net/node:fs close it and say they can't (ERR_FDPASS_UNSUPPORTED_RUNTIME)",
  () =>
    noLeak(async () => {
      const { socketFromFd, serverFromFd, readStreamFromFd, writeStreamFromFd } = await import('fdpass');
      for (const fn of [socketFromFd, serverFromFd, readStreamFromFd, writeStreamFromFd]) {
        const [a, b] = FdSocket.pair();
        const fd = a.release();
        await assert.rejects((async () => fn(fd))(), (e) => e.code === 'ERR_FDPASS_UNSUPPORTED_RUNTIME');
        await b.close();
      }
    }),
  { only: ['deno'], why: 'Node and Bun hand fds to node:net and node:fs' },
);
