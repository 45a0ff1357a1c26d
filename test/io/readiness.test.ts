// The Readiness contract (src/io/readiness.ts), as every backend keeps it
// behind WatchedFd (the only way to watch); run it with FDPASS_BACKEND=<name>
// to check a backend. Internal modules are loaded from dist/ (they are not
// exports of the package).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { isOpen, noLeak, repoRoot } from '../helpers.js';

type Backend = typeof import('../../dist/io/backend.js');
type Watched = typeof import('../../dist/io/watched.js');
type Events = typeof import('../../dist/io/readiness.js');
type Native = typeof import('../../dist/base/native.js');
const dist = (m: string): string => new URL(`file://${repoRoot}/dist/${m}`).href;
const { readinessBackend } = (await import(dist('io/backend.js'))) as Backend;
const { WatchedFd } = (await import(dist('io/watched.js'))) as Watched;
const watch = (fd: number, onReady: (events: number) => void): InstanceType<typeof WatchedFd> => new WatchedFd(fd, onReady);
const { POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP } = (await import(dist('io/readiness.js'))) as Events;
const { native } = (await import(dist('base/native.js'))) as Native;

function pair(): [number, number] {
  const out = new Int32Array(2);
  assert.equal(native.socketpair(native.SOCK_STREAM, out), 0);
  return [out[0]!, out[1]!];
}

/**
 * Resolves with the events of the first callback that has one of `mask`.
 * The callbacks push into `events`; it is looked at once per turn of the
 * loop, for up to 60 s (half a test's time limit), then the test fails
 * naming what never came.
 */
function next(events: number[], mask: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      const hit = events.find((e) => e & mask);
      if (hit !== undefined) resolve(hit);
      else if (Date.now() > deadline) reject(new Error(`no callback with events 0x${mask.toString(16)} within 60 s; got ${events}`));
      else setImmediate(poll);
    };
    poll();
  });
}

/**
 * A byte sent to a second watched pair after whatever the test did, and its
 * POLLIN callback awaited: the backend has polled since, so a callback the
 * test's fds were due has come by then.
 */
async function polledSince(): Promise<void> {
  const [c, d] = pair();
  const seen: number[] = [];
  const w = watch(c, (e) => seen.push(e));
  w.want(POLLIN);
  assert.equal(native.sendmsg(d, Buffer.from('x'), 0, 1, null, 0, null), 1);
  await next(seen, POLLIN);
  w.close();
  native.close(d);
}

test(`readiness (${process.env.FDPASS_BACKEND ?? 'default'} backend): POLLIN, POLLOUT and interest 0`, () =>
  noLeak(async () => {
    assert.equal(typeof readinessBackend().name, 'string');
    const [a, b] = pair();
    const seen: number[] = [];
    const w = watch(a, (e) => seen.push(e));
    assert.equal(w.interest, 0);
    assert.equal(w.want(POLLOUT), null);
    assert.equal(w.interest, POLLOUT);
    assert.ok((await next(seen, POLLOUT)) & POLLOUT);
    // Only the interest's events come: no POLLIN while nothing is there.
    assert.ok(seen.every((e) => !(e & POLLIN)));
    w.want(POLLIN);
    seen.length = 0;
    assert.equal(native.sendmsg(b, Buffer.from('x'), 0, 1, null, 0, null), 1);
    const e = await next(seen, POLLIN);
    assert.equal(e & POLLOUT, 0, 'POLLOUT is not of the interest');
    w.want(0);
    assert.equal(w.interest, 0);
    assert.equal(w.close(), 0);
    assert.equal(w.close(), 0, 'close is idempotent');
    assert.ok(!isOpen(a), 'close() closed the fd');
    native.close(b);
  }));

test('readiness: POLLHUP when the peer is gone', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const seen: number[] = [];
    const w = watch(a, (e) => seen.push(e));
    w.want(POLLIN);
    native.close(b);
    const e = await next(seen, POLLHUP);
    assert.ok(e & POLLHUP);
    w.close();
  }));

test('readiness: POLLRDHUP alone: data arriving calls nobody, the peer going away does', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const seen: number[] = [];
    const w = watch(a, (e) => seen.push(e));
    assert.equal(w.want(POLLRDHUP), null);
    assert.equal(native.sendmsg(b, Buffer.from('x'), 0, 1, null, 0, null), 1);
    // The backend polled, twice, with a byte waiting: no callback, as the
    // kernel does not wake a watcher for what it does not want.
    await polledSince();
    await polledSince();
    assert.deepEqual(seen, [], 'no callback for data while watching for POLLRDHUP only');
    native.close(b);
    const e = await next(seen, POLLRDHUP | POLLHUP);
    assert.ok(e & POLLRDHUP, 'POLLRDHUP is of the interest');
    assert.ok(e & POLLHUP, 'and the peer is gone');
    assert.equal(e & POLLIN, 0, 'POLLIN is not of the interest');
    w.close();
  }));

test('readiness: POLLERR stops watching until the interest is set again', () =>
  noLeak(async () => {
    const [a, b] = pair();
    // b closes with a byte unread: a gets ECONNRESET, pending (POLLERR).
    assert.equal(native.sendmsg(a, Buffer.from('x'), 0, 1, null, 0, null), 1);
    native.close(b);
    const seen: number[] = [];
    const w = watch(a, (e) => seen.push(e));
    w.want(POLLOUT);
    assert.ok((await next(seen, POLLERR)) & POLLERR);
    assert.equal(w.interest, 0, 'POLLERR stopped the watching');
    // The next syscall fails (sendmsg says EPIPE first, recvmsg ECONNRESET).
    const r = native.sendmsg(a, Buffer.from('y'), 0, 1, null, 0, null);
    assert.ok([-constants.errno.ECONNRESET, -constants.errno.EPIPE].includes(r), `sendmsg gave ${r}`);
    w.close();
  }));

test('readiness: release() hands the fd back open', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const w = watch(a, () => {});
    w.want(POLLIN);
    assert.equal(w.release(), a);
    assert.ok(isOpen(a), 'released, not closed');
    assert.equal(w.want(POLLIN), null, 'a closed watcher ignores interest');
    native.close(a);
    native.close(b);
  }));
