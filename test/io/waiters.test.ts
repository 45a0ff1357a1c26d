// WaitQueue (src/io/waiters.ts): the one queue of callers waiting with an
// AbortSignal, under FdSocket, FdServer, RuncListener and Pidfd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repoRoot } from '../helpers.js';

type Waiters = typeof import('../../dist/io/waiters.js');
const { WaitQueue } = (await import(new URL(`file://${repoRoot}/dist/io/waiters.js`).href)) as Waiters;

interface W {
  id: number;
  reject(err: Error): void;
  rejected?: Error;
}
const waiter = (id: number): W => ({
  id,
  reject(err) {
    this.rejected = err;
  },
});

test('WaitQueue: first in, first out; shift takes a waiter out', () => {
  const q = new WaitQueue<W>();
  const [a, b] = [waiter(1), waiter(2)];
  assert.equal(q.add(a), true);
  assert.equal(q.add(b), true);
  assert.equal(q.length, 2);
  assert.equal(q.peek(), a);
  assert.equal(q.shift(), a);
  assert.equal(q.shift(), b);
  assert.equal(q.shift(), undefined);
  assert.equal(q.length, 0);
});

test('WaitQueue: an abort takes its waiter out and rejects it with an AbortError; the next waiter moves up', () => {
  let aborts = 0;
  const q = new WaitQueue<W>(() => aborts++);
  const c = new AbortController();
  const [a, b] = [waiter(1), waiter(2)];
  q.add(a, c.signal);
  q.add(b);
  c.abort();
  assert.equal(a.rejected?.name, 'AbortError');
  assert.equal((a.rejected as Error & { code?: string }).code, 'ABORT_ERR');
  assert.equal(aborts, 1);
  assert.equal(q.length, 1);
  assert.equal(q.shift(), b);
});

test('WaitQueue: an aborted signal rejects at once; a settled waiter no longer listens to its signal', () => {
  const q = new WaitQueue<W>();
  const a = waiter(1);
  assert.equal(q.add(a, AbortSignal.abort()), false);
  assert.equal(a.rejected?.name, 'AbortError');
  assert.equal(q.length, 0);
  const c = new AbortController();
  const b = waiter(2);
  q.add(b, c.signal);
  q.drain((w) => assert.equal(w, b));
  c.abort();
  assert.equal(b.rejected, undefined, 'drained waiters are the caller’s to settle');
  const d = waiter(3);
  q.add(d, new AbortController().signal);
  assert.equal(q.remove(d), true);
  assert.equal(q.remove(d), false);
});
