// Exhaustion and lifecycle: a peer that never reads, a peer that floods,
// close with sends pending, double close, use after close, and fd numbers
// reused aggressively while passing (no number is touched after it was
// closed).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { FdSocket, FdPassError } from 'fdpass';
import { fdTarget, noLeak, tempDir } from '../helpers.js';

describe('exhaustion and lifecycle', () => {
  test('a peer that never reads: sends wait (bounded queue in the kernel), close settles them with coded errors', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('stream');
      const chunk = Buffer.alloc(64 * 1024, 7);
      const settled: Array<'ok' | string> = [];
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) {
        sends.push(
          a.send(chunk).then(
            () => void settled.push('ok'),
            (e: unknown) => {
              assert.ok(e instanceof FdPassError, `coded error, got ${String(e)}`);
              settled.push(e.code);
            },
          ),
        );
      }
      // Let the kernel buffer fill: some sends completed, the rest wait.
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      const completedBeforeClose = settled.length;
      assert.ok(completedBeforeClose < 200, 'some sends wait for a reader that never reads');
      await a.close();
      await Promise.all(sends);
      assert.equal(settled.length, 200, 'every pending send settled');
      const failed = settled.filter((s) => s !== 'ok');
      assert.ok(
        failed.length > 0 && failed.every((c) => c === 'ERR_FDPASS_CLOSED'),
        `waiting sends fail with ERR_FDPASS_CLOSED: ${[...new Set(failed)].join(',')}`,
      );
      await b.close();
    }));

  test('a peer that floods faster than we read: every message arrives, in order, fds intact', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('f'), 'flood');
      const fd = openSync(t.path('f'), 'r');
      const [a, b] = FdSocket.pair('seqpacket');
      const total = 3000;
      const sending = (async () => {
        for (let i = 0; i < total; i++) await a.send(String(i), i % 10 === 0 ? [fd] : []);
      })();
      for (let i = 0; i < total; i++) {
        const m = await b.recv();
        assert.ok(m);
        assert.equal(m.data.toString(), String(i));
        assert.equal(m.fds.length, i % 10 === 0 ? 1 : 0);
        for (const f of m.fds) {
          if (i % 500 === 0) assert.equal(readFileSync(`/proc/self/fd/${f}`, 'utf8'), 'flood');
          closeSync(f);
        }
      }
      await sending;
      await a.close();
      await b.close();
      closeSync(fd);
      t.cleanup();
    }));

  test('double close and use after close: close is idempotent, send/recvFd give ERR_FDPASS_CLOSED, recv null', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('stream');
      await Promise.all([a.close(), a.close()]);
      await a.close();
      await assert.rejects(a.send('x'), (e: unknown) => e instanceof FdPassError && e.code === 'ERR_FDPASS_CLOSED');
      assert.equal(await a.recv(), null, 'recv after close is end of messages');
      await assert.rejects(a.recvFd(), (e: unknown) => e instanceof FdPassError && e.code === 'ERR_FDPASS_CLOSED');
      await b.close();
    }));

  test('fd numbers reopened aggressively while passing: the library never touches a number it gave up', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('mine'), 'mine');
      writeFileSync(t.path('passed'), 'passed');
      const passed = openSync(t.path('passed'), 'r');
      const mine: number[] = [];
      for (let round = 0; round < 200; round++) {
        const [a, b] = FdSocket.pair(round % 2 ? 'stream' : 'seqpacket');
        await a.send('x', [passed, passed]);
        const m = await b.recv();
        assert.ok(m && m.fds.length === 2);
        for (const f of m.fds) closeSync(f);
        await a.close();
        await b.close();
        // Take the numbers the library and we just freed: whatever it still
        // closes or reads by number would now hit these files.
        for (let i = 0; i < 4; i++) mine.push(openSync(t.path('mine'), 'r'));
        if (mine.length > 40) {
          for (const f of mine) assert.equal(readFileSync(`/proc/self/fd/${f}`, 'utf8'), 'mine', `fd ${f} is still ours`);
          for (const f of mine.splice(0)) closeSync(f);
        }
      }
      for (const f of mine) {
        assert.match(fdTarget(f) ?? '', /mine$/);
        closeSync(f);
      }
      closeSync(passed);
      t.cleanup();
    }));
});
