import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeFileSync, fstatSync } from 'node:fs';
import { FdSocket, FdPassError, MAX_NAME_LEN } from 'fdpass';
import type { SocketType, ReceivedMessage } from 'fdpass';
import { collectGarbage, fdTarget, ioTurns, isOpen, noLeak, tempDir } from '../helpers.js';

const types: SocketType[] = ['stream', 'seqpacket', 'dgram'];

function withFile(content: string): { path: string; fd: number; done: () => void } {
  const t = tempDir();
  const path = t.path('file.txt');
  writeFileSync(path, content);
  const fd = openSync(path, 'r');
  return {
    path,
    fd,
    done: () => {
      closeSync(fd);
      t.cleanup();
    },
  };
}

for (const type of types) {
  describe(`FdSocket over ${type}`, () => {
    test('sendFd/recvFd: the received fd reads the file', () =>
      noLeak(async () => {
        const f = withFile(`hello ${type}`);
        const [a, b] = FdSocket.pair(type);
        assert.equal(a.type, type);
        await a.sendFd('/dev/pts/ptmx', f.fd);
        const got = await b.recvFd();
        assert.equal(got.name, '/dev/pts/ptmx');
        assert.notEqual(got.fd, f.fd);
        assert.equal(readFileSync(got.fd, 'utf8'), `hello ${type}`);
        closeSync(got.fd);
        await a.close();
        await b.close();
        f.done();
      }));

    test('send/recv with 0, 1 and 253 fds, in order', () =>
      noLeak(async () => {
        const f = withFile('x');
        const [a, b] = FdSocket.pair(type);
        const many = Array.from({ length: 253 }, () => f.fd);
        await Promise.all([a.send('zero'), a.send(Buffer.from('one'), [f.fd]), a.send(new Uint8Array([1, 2, 3]), many)]);
        let m2: ReceivedMessage | null;
        if (type === 'stream') {
          // A stream read may join fd-less bytes with the chunk that carries
          // fds, but never reads past fds.
          m2 = await b.recv();
          if (m2!.data.toString() === 'zero') m2 = await b.recv();
          else assert.equal(m2!.data.toString(), 'zeroone');
        } else {
          const m1 = await b.recv();
          assert.equal(m1!.data.toString(), 'zero');
          assert.deepEqual(m1!.fds, []);
          m2 = await b.recv();
          assert.equal(m2!.data.toString(), 'one');
        }
        assert.equal(m2!.fds.length, 1);
        const m3 = await b.recv();
        assert.deepEqual([...m3!.data], [1, 2, 3]);
        assert.equal(m3!.fds.length, 253);
        for (const fd of [...m2!.fds, ...m3!.fds]) {
          assert.equal(fstatSync(fd).ino, fstatSync(f.fd).ino);
          closeSync(fd);
        }
        await a.close();
        await b.close();
        f.done();
      }));

    test('for await and the message event', () =>
      noLeak(async () => {
        const f = withFile('y');
        const [a, b] = FdSocket.pair(type);
        for (let i = 0; i < 5; i++) await a.send(`m${i}`, [f.fd]);
        const seen: string[] = [];
        for await (const m of b) {
          seen.push(m.data.toString());
          m.fds.forEach((fd) => closeSync(fd));
          if (seen.length === 3) break;
        }
        const events: ReceivedMessage[] = [];
        await new Promise<void>((res) =>
          b.on('message', (m) => {
            events.push(m);
            if (events.length === 2) res();
          }),
        );
        b.removeAllListeners('message');
        assert.deepEqual([...seen, ...events.map((m) => m.data.toString())], ['m0', 'm1', 'm2', 'm3', 'm4']);
        for (const m of events) m.fds.forEach((fd) => closeSync(fd));
        await a.close();
        await b.close();
        f.done();
      }));

    test('peer credentials are ours', async () => {
      const [a, b] = FdSocket.pair(type);
      assert.equal(a.peer.pid, process.pid);
      assert.equal(b.peer.uid, process.getuid!());
      assert.equal(b.peer.gid, process.getgid!());
      await a.close();
      await b.close();
    });

    test('close() closes the fd and fds of undelivered messages', () =>
      noLeak(async () => {
        const f = withFile('z');
        const [a, b] = FdSocket.pair(type);
        await a.send('a', [f.fd, f.fd]);
        await a.send('b', [f.fd]);
        const first = await b.recv({ maxFds: 2 });
        first!.fds.forEach((fd) => closeSync(fd));
        // The second message was read in the same batch and is buffered.
        const fd = b.fd;
        await b.close();
        assert.equal(b.fd, -1);
        assert.equal(isOpen(fd), false);
        assert.equal(await b.recv(), null);
        await assert.rejects(b.send('x'), { code: 'ERR_FDPASS_CLOSED' });
        await a.close();
        f.done();
      }));
  });
}

describe('stream semantics', () => {
  test('recv returns null at end of file; recvFd gives ERR_FDPASS_EOF', async () => {
    const [a, b] = FdSocket.pair();
    const ended = new Promise<void>((res) => b.once('end', () => res()));
    await a.send('last');
    await a.close();
    assert.equal((await b.recv())!.data.toString(), 'last');
    assert.equal(await b.recv(), null);
    await ended;
    await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_EOF' });
    await b.close();
  });

  test('pending recv settles when the peer closes and when we close', async () => {
    const [a, b] = FdSocket.pair();
    const p = b.recv();
    await ioTurns(); // it waits: nothing to read yet
    await a.close();
    assert.equal(await p, null);
    const [c, d] = FdSocket.pair();
    const q = d.recv();
    const r = d.recvFd().catch((e: FdPassError) => e.code);
    await d.close();
    assert.equal(await q, null);
    assert.equal(await r, 'ERR_FDPASS_CLOSED');
    await c.close();
  });

  test('a message longer than maxBytes is split, fds with the first part', () =>
    noLeak(async () => {
      const f = withFile('s');
      const [a, b] = FdSocket.pair();
      await a.send('abcdefghij', [f.fd]);
      const m1 = await b.recv({ maxBytes: 4 });
      assert.equal(m1!.data.toString(), 'abcd');
      assert.equal(m1!.fds.length, 1);
      const m2 = await b.recv({ maxBytes: 4 });
      assert.equal(m2!.data.toString(), 'efgh');
      assert.deepEqual(m2!.fds, []);
      closeSync(m1!.fds[0]!);
      await a.close();
      await b.close();
      f.done();
    }));

  test('backpressure: sends wait for a slow reader and arrive complete, in order', () =>
    noLeak(async () => {
      const f = withFile('bp');
      const [a, b] = FdSocket.pair();
      const chunk = Buffer.alloc(256 * 1024, 7);
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) {
        chunk[0] = i;
        sends.push(a.send(chunk, [f.fd]));
      }
      assert.ok(a.pendingSends > 0, 'the kernel buffer is full: sends are queued');
      // The caller may reuse its buffer once send() returned.
      chunk.fill(0xee);
      let bytes = 0;
      let fds = 0;
      const starts: number[] = [];
      const stream: Buffer[] = [];
      const all = Promise.all(sends);
      while (bytes < 20 * chunk.length) {
        const m = (await b.recv({ maxBytes: 1 << 20 }))!;
        if (m.fds.length) {
          // The fds come with the read that holds the first byte of their send.
          const start = Math.ceil(bytes / chunk.length) * chunk.length;
          assert.ok(start < bytes + m.data.length, 'fds arrive with the first byte of their send');
          starts.push(start / chunk.length);
          fds += m.fds.length;
          m.fds.forEach((fd) => closeSync(fd));
        }
        stream.push(m.data);
        bytes += m.data.length;
      }
      await all;
      assert.equal(fds, 20, 'each send carried its fd exactly once');
      assert.deepEqual(
        starts,
        Array.from({ length: 20 }, (_, i) => i),
      );
      const joined = Buffer.concat(stream);
      for (let i = 0; i < 20; i++) assert.equal(joined[i * chunk.length], i, `send ${i} in order`);
      assert.equal(joined.indexOf(0xee), -1, 'queued bytes are copies, not the caller buffer');
      await a.close();
      await b.close();
      f.done();
    }));

  test('sending fds with empty data on a stream is refused before sending', async () => {
    const [a, b] = FdSocket.pair();
    assert.throws(() => a.send('', [0]), { name: 'RangeError', code: 'ERR_FDPASS_EMPTY_DATA' });
    assert.throws(() => a.sendFd('', 0), { name: 'RangeError', code: 'ERR_FDPASS_EMPTY_DATA' });
    await a.close();
    await b.close();
  });

  test('end() half-closes: the peer sees EOF and can still answer', async () => {
    const [a, b] = FdSocket.pair();
    await a.send('question');
    await a.end();
    assert.equal((await b.recv())!.data.toString(), 'question');
    assert.equal(await b.recv(), null);
    await b.send('answer');
    assert.equal((await a.recv())!.data.toString(), 'answer');
    await a.close();
    await b.close();
  });
});

describe('runc rules in recvFd', () => {
  test('names of MAX_NAME_LEN bytes or more are refused before sending (UTF-8 bytes)', async () => {
    const [a, b] = FdSocket.pair();
    assert.equal(MAX_NAME_LEN, 4096);
    assert.throws(() => a.sendFd('x'.repeat(4096), 0), { code: 'ERR_FDPASS_NAME_TOO_LONG' });
    // 2048 two-byte characters are 4096 bytes.
    assert.throws(() => a.sendFd('é'.repeat(2048), 0), { code: 'ERR_FDPASS_NAME_TOO_LONG' });
    await a.sendFd('é'.repeat(2047) + 'x', 0).then(async () => {
      const got = await b.recvFd();
      assert.equal(got.name, 'é'.repeat(2047) + 'x');
      closeSync(got.fd);
    });
    await a.close();
    await b.close();
  });

  test('no fd, two fds, a long name: coded errors, every fd closed, next message fine', () =>
    noLeak(async () => {
      const f = withFile('r');
      for (const type of types) {
        const [a, b] = FdSocket.pair(type);
        await a.send('nofd');
        await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_NO_FD' });
        await a.send('two', [f.fd, f.fd]);
        await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_TOO_MANY_FDS' });
        if (type !== 'stream') {
          await a.send(Buffer.alloc(5000, 'n'), [f.fd]);
          await assert.rejects(b.recvFd(), (e: FdPassError) => ['ERR_FDPASS_NAME_TOO_LONG', 'ERR_FDPASS_TRUNCATED'].includes(e.code));
        }
        await a.sendFd('good', f.fd);
        const got = await b.recvFd();
        assert.equal(got.name, 'good');
        assert.match(fdTarget(got.fd)!, /file\.txt$/);
        closeSync(got.fd);
        await a.close();
        await b.close();
      }
      f.done();
    }));

  test('abort signal rejects a pending recvFd with AbortError', async () => {
    const [a, b] = FdSocket.pair();
    const ac = new AbortController();
    const p = b.recvFd({ signal: ac.signal });
    ac.abort();
    await assert.rejects(p, { name: 'AbortError', code: 'ABORT_ERR' });
    // The socket is still usable.
    await a.sendFd('after', 0);
    const got = await b.recvFd();
    assert.equal(got.name, 'after');
    closeSync(got.fd);
    await a.close();
    await b.close();
  });
});

test('EPIPE, not SIGPIPE, when the peer is gone', async () => {
  const [a, b] = FdSocket.pair();
  await b.close();
  await assert.rejects(a.send('x'), (e: FdPassError) => e.code === 'EPIPE' && e.errno === -32 && e.syscall === 'sendmsg');
  await a.close();
});

test('fromFd adopts a socket fd; release gives it back', async () => {
  const [a, b] = FdSocket.pair('seqpacket');
  const fd = b.release();
  assert.equal(b.closed, true);
  assert.equal(isOpen(fd), true);
  const c = FdSocket.fromFd(fd);
  assert.equal(c.type, 'seqpacket');
  await a.send('adopted');
  assert.equal((await c.recv())!.data.toString(), 'adopted');
  await a.close();
  await c.close();
  assert.equal(isOpen(fd), false);
});

describe('garbage collection', () => {
  test('an idle socket keeps its poll callback through a GC', async () => {
    const [a, b] = FdSocket.pair();
    await collectGarbage();
    const p = b.recv();
    await ioTurns(); // it waits on its poll
    await collectGarbage();
    await a.send('after gc');
    assert.equal((await p)!.data.toString(), 'after gc');
    await a.close();
    await b.close();
  });

  test('a socket nobody references is closed by the garbage collector', async () => {
    let fds: number[] = [];
    (() => {
      const [a, b] = FdSocket.pair();
      fds = [a.fd, b.fd];
    })();
    assert.ok(fds.every(isOpen));
    for (let i = 0; i < 10 && fds.some(isOpen); i++) await collectGarbage();
    assert.deepEqual(fds.map(isOpen), [false, false]);
  });
});
