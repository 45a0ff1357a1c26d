// Leak checks the way runc does: count /proc/self/fd around many messages and
// around every error path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { FdSocket, recvFdSync, sendFdSync } from 'fdpass';
import type { SocketType } from 'fdpass';
import { fdTarget, noLeak, openFds } from '../helpers.js';

/** The open fds and what each points at, as 'fd -> target' lines. */
const fdList = (): string[] => openFds().map((fd) => `${fd} -> ${fdTarget(fd)}`);

for (const type of ['stream', 'seqpacket', 'dgram'] as SocketType[]) {
  test(`10,000 messages with fds over ${type}: no fd leaked`, () =>
    noLeak(async () => {
      const before = fdList();
      const [a, b] = FdSocket.pair(type);
      const fd = openSync('/dev/null', 'r');
      const N = 10_000;
      let received = 0;
      const done = new Promise<void>((resolve) => {
        b.on('message', ({ fds }) => {
          for (const f of fds) closeSync(f);
          if (++received === N) resolve();
        });
      });
      for (let i = 0; i < N; i++) {
        if (i % 2) await a.sendFd(`n${i}`, fd);
        else void a.send('x', [fd, fd]);
      }
      await done;
      b.removeAllListeners('message');
      // The sync helpers too.
      for (let i = 0; i < 1000; i++) {
        sendFdSync(a, 's', fd);
        closeSync(recvFdSync(b).fd);
      }
      closeSync(fd);
      await Promise.all([a.close(), b.close()]);
      // At once, with no turn of the event loop: closing is synchronous.
      assert.deepEqual(fdList(), before);
    }));
}

test('error paths leak nothing: truncation, runc violations, close with buffered fds, peer death', () =>
  noLeak(async () => {
    const fd = openSync('/dev/null', 'r');
    for (let round = 0; round < 200; round++) {
      const [a, b] = FdSocket.pair('seqpacket');
      await a.send('many', Array(20).fill(fd));
      await a.send('big', [fd]);
      await a.send('nofd');
      await a.send('two', [fd, fd]);
      await a.send(Buffer.alloc(200), [fd]);
      await assert.rejects(b.recv({ maxFds: 3 }), { code: 'ERR_FDPASS_CONTROL_TRUNCATED' });
      closeSync((await b.recvFd()).fd);
      await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_NO_FD' });
      await assert.rejects(b.recvFd(), { code: 'ERR_FDPASS_TOO_MANY_FDS' });
      await assert.rejects(b.recv({ maxBytes: 100 }), { code: 'ERR_FDPASS_TRUNCATED' });
      // Messages still queued in the kernel and in our buffer when we close.
      for (let i = 0; i < 10; i++) await a.send('left', [fd, fd, fd]);
      await b.recv().then((m) => m && m.fds.forEach((f) => closeSync(f)));
      await b.close();
      await assert.rejects(a.send('dead', [fd]), (e: { code?: string }) => ['EPIPE', 'ECONNRESET', 'ECONNREFUSED'].includes(e.code!));
      await a.close();
    }
    closeSync(fd);
  }));

test('noLeak itself: an fd left open fails it, an fd open for a moment does not', async () => {
  let kept = -1;
  await assert.rejects(
    noLeak(async () => {
      kept = openSync('/dev/null', 'r');
    }),
    /fds not as before: leaked \d+ -> \/dev\/null/,
  );
  closeSync(kept);
  // Opened during fn and closed a turn after it returned (as a runtime's own
  // thread may hold a file for a moment): not a leak.
  await noLeak(async () => {
    const brief = openSync('/dev/null', 'r');
    setImmediate(() => closeSync(brief));
  });
});
