import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { closeSync, fstatSync, openSync, writeFileSync } from 'node:fs';
import { FdServer } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { isOpen, noLeak, openFds, tempDir } from '../../helpers.js';
import { isCloexec, readWhenReady } from './util.js';

function withFile(content: string): { fd: number; done: () => void } {
  const t = tempDir();
  const path = t.path('file.txt');
  writeFileSync(path, content);
  const fd = openSync(path, 'r');
  return {
    fd,
    done: () => {
      closeSync(fd);
      t.cleanup();
    },
  };
}

async function closeBoth(a: FdStream, b: FdStream): Promise<void> {
  const closed = [a, b].filter((s) => !s.closed).map((s) => once(s, 'close'));
  a.destroy();
  b.destroy();
  await Promise.all(closed);
}

describe('FdStream writes and paused reads', () => {
  test('a write with fds: the callback runs, the fds come with read(size, null), in order with other writes', () =>
    noLeak(async () => {
      const f = withFile('payload');
      const [a, b] = FdStream.pair();
      a.write('AAAA');
      const sent = new Promise<void>((res) => a.write({ data: Buffer.from('BBBB'), fds: [f.fd, f.fd], callback: () => res() }));
      a.write(new Uint8Array([0x43, 0x43]));
      // A reader that reads one message at a time: the fd-less bytes first.
      // They may arrive glued to the fd-carrying write in one recvmsg, and
      // must still not take its fds.
      const first = await readWhenReady(b, 4, null);
      assert.equal(first.data!.toString(), 'AAAA');
      assert.deepEqual(first.fds, []);
      await sent;
      const second = await readWhenReady(b, 4, null);
      assert.equal(second.data!.toString(), 'BBBB');
      assert.equal(second.fds.length, 2);
      for (const fd of second.fds) {
        assert.equal(fstatSync(fd).ino, fstatSync(f.fd).ino);
        assert.equal(isCloexec(fd), true);
        closeSync(fd);
      }
      const third = await readWhenReady(b, 2, null);
      assert.equal(third.data!.toString(), 'CC');
      assert.deepEqual(third.fds, []);
      assert.equal(b.pendingFds, 0);
      await closeBoth(a, b);
      f.done();
    }));

  test('plain read(size) leaves fds pending for the next read(size, null) or takeFds()', () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      a.write({ data: 'header-and-body', fds: [f.fd] });
      a.write({ data: 'second', fds: [f.fd, f.fd] });
      const header = await readWhenReady(b, 7);
      assert.equal(header.toString(), 'header-');
      const body = await readWhenReady(b, 8, null);
      assert.equal(body.data!.toString(), 'and-body');
      assert.equal(body.fds.length, 1);
      closeSync(body.fds[0]!);
      const second = await readWhenReady(b, 6);
      assert.equal(second.toString(), 'second');
      assert.equal(b.pendingFds, 2);
      const fds = b.takeFds();
      assert.equal(fds.length, 2);
      fds.forEach((fd) => closeSync(fd));
      assert.deepEqual(b.read(0, null), { data: null, fds: [] });
      await closeBoth(a, b);
      f.done();
    }));

  test('read(size, n) takes n fds, ahead of the bytes if need be; fewer when fewer came', () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      // Like Wayland: one write carries the fds of two messages.
      a.write({ data: 'msg1msg2', fds: [f.fd, f.fd, f.fd] });
      const m1 = await readWhenReady(b, 4, 1);
      assert.equal(m1.data!.toString(), 'msg1');
      assert.equal(m1.fds.length, 1);
      const m2 = await readWhenReady(b, 4, 5);
      assert.equal(m2.data!.toString(), 'msg2');
      assert.equal(m2.fds.length, 2);
      [...m1.fds, ...m2.fds].forEach((fd) => closeSync(fd));
      assert.equal(b.read(4, 0), null, 'not enough bytes: null, nothing taken');
      await closeBoth(a, b);
      f.done();
    }));

  test('fds nobody took are closed with the stream', () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      const before = new Set(openFds());
      await new Promise<void>((res) => a.write({ data: 'one', fds: [f.fd, f.fd, f.fd] }, () => res()));
      a.write({ data: 'two', fds: [f.fd] });
      const got = await readWhenReady(b, 3); // read, fds left pending
      assert.equal(got.toString(), 'one');
      await new Promise((res) => setImmediate(res));
      const arrived = openFds().filter((fd) => !before.has(fd) && fd !== a.fd && fd !== b.fd);
      assert.ok(arrived.length >= 3, `fds arrived: ${arrived.length}`);
      await closeBoth(a, b);
      for (const fd of arrived) assert.equal(isOpen(fd), false, `fd ${fd} still open`);
      f.done();
    }));

  test("destroy() from a 'data' listener closes the fds of chunks read in the same batch", () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      let chunks = 0;
      b.on('data', () => {
        chunks++;
        b.destroy();
      });
      await new Promise((res) => setImmediate(res)); // b waits for readiness now
      for (let i = 0; i < 5; i++) a.write({ data: `m${i}`, fds: [f.fd, f.fd] });
      await once(b, 'close');
      assert.equal(chunks, 1);
      await closeBoth(a, b); // noLeak: the fds of m1..m4 were closed too
      f.done();
    }));

  test('write checks: fds need a byte of data; bad fds throw before anything is sent', async () => {
    const [a, b] = FdStream.pair();
    assert.throws(() => a.write({ data: '', fds: [0] }), { code: 'ERR_FDPASS_EMPTY_DATA' });
    assert.throws(() => a.write({ data: 'x', fds: [-1] }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => a.write({ data: 5 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => b.read(1, -1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => b.setEncoding('utf8'), { code: 'ERR_METHOD_NOT_IMPLEMENTED' });
    assert.equal(a.setNoDelay(true), a);
    await closeBoth(a, b);
  });
});

describe('FdStream flowing mode', () => {
  test("'fds' comes just before the 'data' of the chunk the fds came with", () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      const events: string[] = [];
      b.on('fds', (fds: number[]) => {
        events.push(`fds:${fds.length}`);
        fds.forEach((fd) => closeSync(fd));
      });
      b.on('data', (chunk: Buffer) => events.push(`data:${chunk.toString()}`));
      const ended = once(b, 'end');
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((res) => a.write({ data: `m${i}`, fds: Array(i + 1).fill(f.fd), callback: () => res() }));
        // Wait for delivery, so that each write is its own chunk.
        if (!events.includes(`data:m${i}`)) {
          await new Promise<void>((res) => {
            const onData = (chunk: Buffer): void => {
              if (chunk.toString() !== `m${i}`) return;
              b.off('data', onData);
              res();
            };
            b.on('data', onData);
          });
        }
      }
      a.end();
      await ended;
      assert.deepEqual(events, ['fds:1', 'data:m0', 'fds:2', 'data:m1', 'fds:3', 'data:m2']);
      await closeBoth(a, b);
      f.done();
    }));

  test('pipe() and async iteration see the bytes; fds without a taker stay pending and are closed', () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      a.write({ data: 'hello ', fds: [f.fd] });
      a.write('world');
      const sink = new PassThrough();
      let text = '';
      sink.on('data', (c: Buffer) => (text += c.toString()));
      b.pipe(sink);
      while (text.length < 11) await once(sink, 'data');
      assert.equal(text, 'hello world');
      assert.equal(b.pendingFds, 1);
      await closeBoth(a, b); // noLeak checks that the pending fd was closed
      const [c, d] = FdStream.pair();
      c.end('for await');
      let iterated = '';
      for await (const chunk of d) iterated += (chunk as Buffer).toString();
      assert.equal(iterated, 'for await');
      await closeBoth(c, d);
      f.done();
    }));
});

describe('FdStream lifetime', () => {
  test('connect by path and by abstract name; fromSocket wraps what FdServer accepts', () =>
    noLeak(async () => {
      const t = tempDir();
      for (const where of [{ path: t.path('s.sock') }, { abstract: `fdpass-stream-test-${process.pid}` }]) {
        const server = await FdServer.listen(where);
        const client = FdStream.connect(where);
        assert.equal(client.connecting, true);
        assert.equal(client.pending, true);
        client.write('early'); // waits for the connection
        const [sock] = await Promise.all([server.accept(), once(client, 'connect')]);
        assert.equal(client.connecting, false);
        assert.equal(client.readyState, 'open');
        const conn = FdStream.fromSocket(sock);
        assert.equal(sock.closed, true);
        assert.equal((await readWhenReady(conn, 5)).toString(), 'early');
        assert.equal(conn.peer.pid, process.pid);
        conn.write('back');
        assert.equal((await readWhenReady(client, 4)).toString(), 'back');
        await closeBoth(client, conn);
        await server.close();
      }
      t.cleanup();
    }));

  test("connect errors come as 'error' then 'close'", () =>
    noLeak(async () => {
      const t = tempDir();
      const s = FdStream.connect(t.path('nobody.sock'));
      const [err] = (await once(s, 'error').catch((e: unknown) => [e])) as [Error & { code: string }];
      assert.equal(err.code, 'ENOENT');
      if (!s.closed) await once(s, 'close');
      t.cleanup();
    }));

  test('half-close: end() gives the peer end of file, and the other direction still works', () =>
    noLeak(async () => {
      const [a, b] = FdStream.pair({ allowHalfOpen: true });
      a.end('bye');
      const got: Buffer[] = [];
      b.on('data', (c: Buffer) => got.push(c));
      await once(b, 'end');
      assert.equal(Buffer.concat(got).toString(), 'bye');
      b.end('reply');
      const back: Buffer[] = [];
      a.on('data', (c: Buffer) => back.push(c));
      await Promise.all([once(a, 'close'), once(b, 'close')]);
      assert.equal(Buffer.concat(back).toString(), 'reply');
    }));

  test("without allowHalfOpen (the default) the peer's end ends and closes the stream", () =>
    noLeak(async () => {
      const [a, b] = FdStream.pair();
      b.resume();
      a.resume();
      a.end();
      await Promise.all([once(a, 'close'), once(b, 'close')]);
      assert.equal(a.fd, -1);
      assert.equal(b.fd, -1);
    }));

  test("writing to a stream whose peer is gone gives 'error' EPIPE", () =>
    noLeak(async () => {
      const [a, b] = FdStream.pair();
      b.destroy();
      await once(b, 'close');
      a.write('x');
      const [err] = (await once(a, 'error').catch((e: unknown) => [e])) as [Error & { code: string }];
      assert.ok(err.code === 'EPIPE' || err.code === 'ECONNRESET', err.code);
      if (!a.closed) await once(a, 'close');
    }));

  test('bad arguments to pair() and connect() leave no fd open and the stream still usable', () =>
    noLeak(async () => {
      assert.throws(() => FdStream.pair({ readableHighWaterMark: -5 }), { code: 'ERR_INVALID_ARG_VALUE' });
      const t = tempDir();
      const server = await FdServer.listen(t.path('s.sock'));
      const s = new FdStream();
      assert.throws(() => s.connect(`/${'x'.repeat(200)}`), { code: 'ERR_FDPASS_PATH_TOO_LONG' });
      assert.equal(s.connecting, false);
      s.connect(server.path!);
      const conn = await server.accept();
      await once(s, 'connect');
      s.destroy();
      await conn.close();
      await server.close();
      t.cleanup();
    }));

  test('destroy() with a write in flight calls its callback, with an error', () =>
    noLeak(async () => {
      const f = withFile('x');
      const [a, b] = FdStream.pair();
      // The peer does not read: a big write stays in flight.
      const done = new Promise<Error | null | undefined>((res) => a.write({ data: Buffer.alloc(4 << 20), fds: [f.fd], callback: res }));
      await new Promise((res) => setImmediate(res));
      a.destroy();
      const err = (await done) as (Error & { code?: string }) | null | undefined;
      assert.ok(err, 'the callback got an error');
      assert.equal(typeof err.code, 'string');
      await closeBoth(a, b);
      f.done();
    }));

  test('a peer that closes with our data unread: ECONNRESET from recvmsg, not EBADF from poll', () =>
    noLeak(async () => {
      const [a, b] = FdStream.pair();
      a.on('data', () => {});
      a.write('unread by b');
      await new Promise((res) => setImmediate(res));
      b.destroy();
      const [err] = (await once(a, 'error')) as [Error & { code: string; syscall?: string }];
      assert.equal(err.code, 'ECONNRESET');
      assert.equal(err.syscall, 'recvmsg');
      if (!a.closed) await once(a, 'close');
    }));

  test('fromFd adopts a connected socket and refuses other fds', () =>
    noLeak(async () => {
      const f = withFile('x');
      assert.throws(() => FdStream.fromFd(f.fd), { code: 'ENOTSOCK' });
      const [a, b] = FdStream.pair();
      // Hand b's fd to a new stream through the wire, as a peer would.
      a.write({ data: 'sock', fds: [b] });
      const got = await readWhenReady(b, 4, null);
      const c = FdStream.fromFd(got.fds[0]!);
      c.write('via c');
      assert.equal((await readWhenReady(a, 5)).toString(), 'via c');
      c.destroy();
      await once(c, 'close');
      await closeBoth(a, b);
      f.done();
    }));
});

describe('FdStream and garbage collection', () => {
  test('a stream created before a garbage collection still reads when data comes', () =>
    noLeak(async () => {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      const [a, b] = FdStream.pair();
      gc();
      await new Promise((res) => setImmediate(res));
      gc();
      const got = readWhenReady(b, 8); // b starts polling now
      await new Promise((res) => setImmediate(res));
      a.write('after gc');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no data after a garbage collection')), 10000);
      });
      assert.equal((await Promise.race([got, timeout]).finally(() => clearTimeout(timer))).toString(), 'after gc');
      await closeBoth(a, b);
    }));
});

describe('FdStream backpressure', () => {
  test('a writer whose peer does not read queues in user space; the reader buffers a bounded amount', () =>
    noLeak(async () => {
      const [a, b] = FdStream.pair();
      const chunk = Buffer.alloc(65536, 7);
      let written = 0;
      while (a.write(chunk)) written += chunk.length;
      written += chunk.length;
      // Let the reader fill its buffer up to its high-water mark, no further.
      b.on('readable', () => {});
      b.read(0);
      for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
      b.removeAllListeners('readable');
      const bound = b.readableHighWaterMark + 8 * 65536;
      assert.ok(b.readableLength <= bound, `reader buffered ${b.readableLength} > ${bound}`);
      // More than the reader buffers: the kernel buffer is full, so the rest waits.
      for (let i = 0; i < 16; i++) {
        a.write(chunk);
        written += chunk.length;
      }
      assert.ok(a.writableLength > 0, 'writes queued while the peer does not read');
      assert.ok(b.readableLength <= bound, `reader buffered ${b.readableLength} > ${bound}`);
      let received = 0;
      const drained = once(a, 'drain');
      b.on('data', (c: Buffer) => (received += c.length));
      await drained;
      a.end();
      await once(b, 'end');
      assert.equal(received, written);
      await closeBoth(a, b);
    }));
});
