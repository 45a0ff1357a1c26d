// The truncation matrix: fds that do not fit, data that does not fit. Each
// case gives its code, leaks nothing, and the next message still arrives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { FdServer, FdSocket } from 'fdpass';
import type { SocketType } from 'fdpass';
import { openFds, noLeak, tempDir } from '../helpers.js';
import { needs } from '../tools.js';

test('2 fds into a 1-fd receive: ERR_FDPASS_CONTROL_TRUNCATED, both closed, next message fine', () =>
  noLeak(async () => {
    for (const type of ['stream', 'seqpacket', 'dgram'] as SocketType[]) {
      const [a, b] = FdSocket.pair(type);
      await a.send('two', [0, 0]);
      await a.send('one', [0]);
      await assert.rejects(b.recv({ maxFds: 1 }), { code: 'ERR_FDPASS_CONTROL_TRUNCATED' });
      const m = await b.recv({ maxFds: 1 });
      assert.equal(m!.data.toString(), 'one');
      assert.equal(m!.fds.length, 1);
      closeSync(m!.fds[0]!);
      // maxFds: 0 refuses any fd.
      await a.send('x', [0]);
      await assert.rejects(b.recv({ maxFds: 0 }), { code: 'ERR_FDPASS_CONTROL_TRUNCATED' });
      await Promise.all([a.close(), b.close()]);
    }
  }));

test('oversized data on seqpacket and dgram: ERR_FDPASS_TRUNCATED, fds closed, next message fine', () =>
  noLeak(async () => {
    for (const type of ['seqpacket', 'dgram'] as SocketType[]) {
      const [a, b] = FdSocket.pair(type);
      await a.send(Buffer.alloc(100, 1), [0, 0, 0]);
      await a.send('small', [0]);
      // Longer than maxBytes: refused with its fds closed (the kernel reads it whole,
      // so that messages read ahead are never cut for a later caller).
      await assert.rejects(b.recv({ maxBytes: 10 }), { code: 'ERR_FDPASS_TRUNCATED' });
      const m = await b.recv({ maxBytes: 10 });
      assert.equal(m!.data.toString(), 'small');
      m!.fds.forEach((fd) => closeSync(fd));
      // A message already buffered with a larger read, then asked for with a
      // smaller maxBytes, gives the same error.
      await a.send('first');
      await a.send(Buffer.alloc(50, 2), [0]);
      assert.equal((await b.recv())!.data.toString(), 'first');
      await assert.rejects(b.recv({ maxBytes: 20 }), { code: 'ERR_FDPASS_TRUNCATED' });
      await Promise.all([a.close(), b.close()]);
    }
  }));

test('200 fds under a low RLIMIT_NOFILE: MSG_CTRUNC is an error, the fds that arrived are closed', needs('python3', 'prlimit'), () =>
  noLeak(async () => {
    const t = tempDir();
    writeFileSync(t.path('f'), 'data');
    const path = t.path('rl.sock');
    const server = await FdServer.listen(path);
    // A Python sender with normal limits: 200 fds, then one good message.
    const child = spawn('python3', [
      '-c',
      `import socket, sys, os
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDONLY)
socket.send_fds(s, [b"many"], [fd] * 200)
socket.send_fds(s, [b"next"], [fd])
print("sent", flush=True)
s.recv(1)`,
      path,
      t.path('f'),
    ]);
    let out = '';
    const sent = new Promise<void>((res) => child.stdout.on('data', (d: Buffer) => (out += d.toString()).includes('sent\n') && res()));
    const conn = await server.accept();
    try {
      // Wait until both messages are in our receive queue: the sender says so.
      await sent;
      // RLIMIT_NOFILE bounds fd numbers: set it so that 40 numbers are free.
      const open = new Set(openFds());
      let limit = 0;
      for (let free = 0; free < 40; limit++) if (!open.has(limit)) free++;
      const old = execFileSync('prlimit', ['--pid', String(process.pid), '--nofile', '--output=SOFT,HARD', '--noheadings'])
        .toString()
        .trim()
        .split(/\s+/);
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${limit}:${old[1]}`]);
      try {
        await assert.rejects(conn.recv({ maxBytes: 4 }), (e: Error & { code?: string }) => {
          assert.equal(e.code, 'ERR_FDPASS_CONTROL_TRUNCATED');
          assert.match(e.message, /MSG_CTRUNC/);
          // Some fds were installed before the limit hit; they were closed.
          const arrived = Number(/\((\d+) arrived/.exec(e.message)?.[1]);
          assert.ok(arrived > 0 && arrived < 200, `some fds arrived (${arrived})`);
          return true;
        });
      } finally {
        execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${old[0]}:${old[1]}`]);
      }
      const next = await conn.recv();
      assert.equal(next!.data.toString(), 'next');
      assert.equal(readFileSync(next!.fds[0]!, 'utf8'), 'data');
      next!.fds.forEach((fd) => closeSync(fd));
      await conn.send('k');
      await new Promise((res) => child.on('close', res));
    } finally {
      child.kill();
      await Promise.all([conn.close(), server.close()]);
      t.cleanup();
    }
  }),
);

test('recvFd of a long name on a stream: ERR_FDPASS_NAME_TOO_LONG, fd closed', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const fd = openSync('/dev/null', 'r');
    await a.send(Buffer.alloc(4096, 'n'), [fd]);
    await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_NAME_TOO_LONG' });
    await a.sendFd('ok', fd);
    closeSync(fd);
    const got = await b.recvFd();
    assert.equal(got.name, 'ok');
    closeSync(got.fd);
    await Promise.all([a.close(), b.close()]);
  }));

test('a small maxFds or maxBytes applies to its own message, not to the ones read ahead with it', () =>
  noLeak(async () => {
    for (const type of ['seqpacket', 'dgram'] as SocketType[]) {
      const [a, b] = FdSocket.pair(type);
      const fd = openSync('/dev/null', 'r');
      await a.send('small', [fd]);
      await a.send(Buffer.alloc(3000, 1), Array(100).fill(fd));
      closeSync(fd);
      // The first recv reads both messages in one batch.
      const m1 = await b.recv({ maxFds: 1, maxBytes: 10 });
      assert.equal(m1!.data.toString(), 'small');
      m1!.fds.forEach((f) => closeSync(f));
      const m2 = await b.recv();
      assert.equal(m2!.data.length, 3000, `${type}: the second message is whole`);
      assert.equal(m2!.fds.length, 100, `${type}: with all its fds`);
      m2!.fds.forEach((f) => closeSync(f));
      await Promise.all([a.close(), b.close()]);
    }
  }));
