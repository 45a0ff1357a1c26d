// The primary's scheduler on its own: round robin in runs, least loaded,
// and the bound on unacknowledged connections per worker.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { repoRoot } from '../../helpers.js';

type Schedule = typeof import('../../../dist/protocols/cluster/schedule.js');
const { RUN, schedule } = (await import(new URL(`file://${repoRoot}/dist/protocols/cluster/schedule.js`).href)) as Schedule;

interface W {
  name: string;
  unacked: number;
  load: number;
}
const worker = (name: string, unacked = 0, load = 0): W => ({ name, unacked, load });
const fds = (n: number, from = 100): number[] => Array.from({ length: n }, (_, i) => from + i);
/** The shares by worker name. */
const byName = (shares: Map<W, number[]>): Record<string, number[]> => Object.fromEntries([...shares].map(([w, s]) => [w.name, s]));

describe('cluster scheduler', () => {
  it(`round robin: runs of ${RUN} per worker, in turn, the cursor going on from where it stopped`, () => {
    const ws = [worker('a'), worker('b'), worker('c')];
    const first = schedule(fds(20), ws, 'round-robin', 1024, 0);
    assert.equal(first.taken, 20);
    assert.deepEqual(byName(first.shares), { a: fds(8, 100), b: fds(8, 108), c: fds(4, 116) });
    assert.equal(first.cursor, 3);
    // A wake-up that accepted 2: one worker, the next in turn.
    const second = schedule(fds(2, 200), ws, 'round-robin', 1024, first.cursor);
    assert.deepEqual(byName(second.shares), { a: [200, 201] });
    const third = schedule(fds(1, 300), ws, 'round-robin', 1024, second.cursor);
    assert.deepEqual(byName(third.shares), { b: [300] });
  });

  it('round robin: a worker at maxUnacked is skipped, a run ends where its worker fills up, what fits nowhere waits', () => {
    const ws = [worker('a', 8), worker('b', 10), worker('c', 7)];
    const s = schedule(fds(10), ws, 'round-robin', 10, 0);
    // a has room for 2, b for none, c for 3: 5 given out, 5 wait.
    assert.deepEqual(byName(s.shares), { a: [100, 101], c: [102, 103, 104] });
    assert.equal(s.taken, 5);
  });

  it('least loaded: each connection to the fewest open plus unacknowledged, the first of equals', () => {
    const ws = [worker('a', 0, 5), worker('b', 1, 1), worker('c', 0, 3)];
    const s = schedule(fds(6), ws, 'least-loaded', 1024, 0);
    // Open plus unacknowledged: a 5, b 2, c 3. Each connection raises its worker's by one.
    assert.deepEqual(byName(s.shares), { b: [100, 101, 103], c: [102, 104], a: [105] });
    assert.equal(s.taken, 6);
    assert.equal(s.cursor, 0, 'least loaded leaves the round robin cursor alone');
  });

  it('least loaded respects maxUnacked, and nothing is given out without candidates', () => {
    const s = schedule(fds(4), [worker('a', 2, 0), worker('b', 0, 50)], 'least-loaded', 3, 0);
    assert.deepEqual(byName(s.shares), { a: [100], b: [101, 102, 103] });
    const none = schedule(fds(4), [], 'round-robin', 3, 5);
    assert.equal(none.taken, 0);
    assert.equal(none.shares.size, 0);
  });
});
