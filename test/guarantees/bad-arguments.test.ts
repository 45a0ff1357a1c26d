// Bad input gets a clear error, nothing is sent, nothing is lost.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { FdServer, FdSocket, recvFdSync, sendFdSync } from 'fdpass';
import type { FdPassError } from 'fdpass';
import { noLeak, tempDir } from '../helpers.js';

const badFds: [unknown, string][] = [
  [-1, 'RangeError'],
  [1.5, 'RangeError'],
  [NaN, 'RangeError'],
  [2 ** 31, 'RangeError'],
  [Infinity, 'RangeError'],
  ['3', 'TypeError'],
  [null, 'TypeError'],
  [{}, 'TypeError'],
  [3n, 'TypeError'],
];

describe('misuse', () => {
  test('bad fds throw TypeError/RangeError before anything is sent', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair();
      for (const [fd, name] of badFds) {
        assert.throws(() => a.sendFd('x', fd as number), { name }, `sendFd ${String(fd)}`);
        assert.throws(() => a.send('x', [fd as number]), { name }, `send ${String(fd)}`);
        assert.throws(() => sendFdSync(a, 'x', fd as number), { name }, `sendFdSync ${String(fd)}`);
        assert.throws(() => sendFdSync(fd as number, 'x', 0), { name }, `sendFdSync sock ${String(fd)}`);
        assert.throws(() => recvFdSync(fd as number), { name }, `recvFdSync ${String(fd)}`);
        assert.throws(() => FdSocket.fromFd(fd as number), { name }, `fromFd ${String(fd)}`);
      }
      assert.throws(() => a.send('x', Array(254).fill(0)), { name: 'RangeError' });
      assert.throws(() => a.send('x', 0 as unknown as number[]), { name: 'TypeError' });
      assert.throws(() => a.send(42 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => a.sendFd(42 as unknown as string, 0), { name: 'TypeError' });
      assert.throws(() => b.recv({ maxBytes: 0 }), { name: 'RangeError' });
      assert.throws(() => b.recv({ maxFds: 254 }), { name: 'RangeError' });
      assert.throws(() => b.recv({ maxBytes: 1.5 }), { name: 'RangeError' });
      assert.throws(() => b.recv('x' as never), { name: 'TypeError' });
      assert.throws(() => b.recv({ signal: {} as AbortSignal }), { name: 'TypeError' });
      assert.throws(() => FdSocket.pair('raw' as never), { name: 'TypeError' });
      assert.throws(() => FdSocket.connect(42 as never), { name: 'TypeError' });
      assert.throws(() => FdSocket.connect({}), { name: 'TypeError' });
      assert.throws(() => FdSocket.connect({ path: 'a', abstract: 'b' }), { name: 'TypeError' });
      assert.throws(() => FdServer.listen({ path: '/tmp/x', backlog: -1 }), { name: 'RangeError' });
      assert.throws(() => FdServer.listen({ path: '/tmp/x', mode: 0o10000 }), { name: 'RangeError' });
      assert.throws(() => FdServer.listen({ path: '/tmp/x', allow: true as never }), { name: 'TypeError' });
      // Nothing was sent: the next message is the first one the peer sees.
      await a.send('clean');
      assert.equal((await b.recv())!.data.toString(), 'clean');
      await Promise.all([a.close(), b.close()]);
    }));

  test('closed fds give EBADF, the socket stays usable', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair();
      const fd = openSync('/dev/null', 'r');
      closeSync(fd);
      await assert.rejects(a.sendFd('x', fd), (e: FdPassError) => e.code === 'EBADF' && e.syscall === 'sendmsg');
      assert.throws(() => sendFdSync(a, 'x', fd), { code: 'EBADF' });
      assert.throws(() => recvFdSync(fd), { code: 'EBADF' });
      assert.throws(() => FdSocket.fromFd(fd), { code: 'EBADF' });
      await a.send('still fine');
      assert.equal((await b.recv())!.data.toString(), 'still fine');
      await Promise.all([a.close(), b.close()]);
    }));

  test('non-socket fds given as sockets: ENOTSOCK', () =>
    noLeak(async () => {
      const fd = openSync('/dev/null', 'r');
      assert.throws(() => sendFdSync(fd, 'x', 0), { code: 'ENOTSOCK' });
      assert.throws(() => recvFdSync(fd), { code: 'ENOTSOCK' });
      assert.throws(() => FdSocket.fromFd(fd), { code: 'ENOTSOCK' });
      closeSync(fd);
    }));

  test('use after close: coded errors, double close is fine', async () => {
    const [a, b] = FdSocket.pair();
    await a.close();
    await a.close();
    await assert.rejects(a.send('x'), { code: 'ERR_FDPASS_CLOSED' });
    await assert.rejects(a.sendFd('x', 0), { code: 'ERR_FDPASS_CLOSED' });
    await assert.rejects(a.recvFd(), { code: 'ERR_FDPASS_CLOSED' });
    assert.equal(await a.recv(), null);
    assert.throws(() => sendFdSync(a, 'x', 0), { code: 'ERR_FDPASS_CLOSED' });
    assert.throws(() => recvFdSync(a), { code: 'ERR_FDPASS_CLOSED' });
    assert.throws(() => a.release(), { code: 'ERR_FDPASS_CLOSED' });
    assert.throws(() => a.peer, { code: 'ERR_FDPASS_CLOSED' });
    await assert.rejects(a.end(), { code: 'ERR_FDPASS_CLOSED' });
    await b.close();
  });

  test('paths: too long, missing folder, NUL bytes, empty', async () => {
    const t = tempDir();
    assert.throws(() => FdServer.listen('/tmp/' + 'p'.repeat(103)), {
      name: 'RangeError',
      code: 'ERR_FDPASS_PATH_TOO_LONG',
      message:
        'The value of "path" is out of range. It must be at most 107 bytes (sun_path). Received 108 bytes ("/tmp/pppppppppppppppppppppppppppppppp...")',
    });
    // Bytes, not characters: 54 two-byte characters are 108 bytes.
    assert.throws(() => FdSocket.connect('/' + 'é'.repeat(54)), { code: 'ERR_FDPASS_PATH_TOO_LONG', message: /Received 109 bytes/ });
    assert.throws(() => FdSocket.connect({ abstract: 'a'.repeat(108) }), {
      code: 'ERR_FDPASS_PATH_TOO_LONG',
      message: /Received 108 bytes/,
    });
    // 107 bytes is the most a path may have.
    const long = t.dir + '/' + 'q'.repeat(107 - t.dir.length - 1);
    const server = await FdServer.listen(long);
    await server.close();
    assert.throws(() => FdServer.listen('bad\0path'), { name: 'TypeError' });
    assert.throws(() => FdSocket.connect({ abstract: 'nul\0inside' }), { name: 'TypeError' });
    assert.throws(() => FdSocket.connect(''), { name: 'TypeError' });
    await assert.rejects(FdServer.listen(t.path('missing/dir/s.sock')), (e: FdPassError) => e.code === 'ENOENT' && e.syscall === 'bind');
    await assert.rejects(FdSocket.connect(t.path('none.sock')), (e: FdPassError) => e.code === 'ENOENT' && e.errno === -2);
    t.cleanup();
  });
});
