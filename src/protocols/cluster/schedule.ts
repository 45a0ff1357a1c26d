// The primary's scheduler: which worker gets which of the connections it
// accepted. A pure function of what each worker holds, so that it is tested
// on its own (test/protocols/cluster/schedule.test.ts) and the primary only applies
// its answer.

/** A worker as the scheduler sees it. */
export interface Candidate {
  /** Connections handed to it and not acknowledged yet. */
  readonly unacked: number;
  /** Its open connections, as it last reported them. */
  readonly load: number;
}

export type ScheduleMode = 'round-robin' | 'least-loaded';

export interface Schedule<T> {
  /** Each chosen worker's share of the pending connections, in their order. */
  shares: Map<T, number[]>;
  /** How many pending connections, from the first, were given out; the rest wait for room. */
  taken: number;
  /** Where round robin goes on from next time. */
  cursor: number;
}

/**
 * Round robin hands out connections in runs of at most this many per
 * worker, so that a wake-up that accepted a few costs one sendmsg and wakes
 * one worker, not all of them; big batches still spread.
 */
export const RUN = 8;

/**
 * Share `pending` (fds, oldest first) among `candidates`, none of which may
 * end up with `maxUnacked` or more unacknowledged. 'round-robin' goes on
 * from `cursor` in runs of RUN; 'least-loaded' gives each connection to the
 * worker with the fewest open plus unacknowledged ones (the first of equals).
 */
export function schedule<T extends Candidate>(
  pending: readonly number[],
  candidates: readonly T[],
  mode: ScheduleMode,
  maxUnacked: number,
  cursor: number,
): Schedule<T> {
  const shares = new Map<T, number[]>();
  let runTarget: T | undefined;
  let runLeft = 0;
  let taken = 0;
  for (; taken < pending.length; taken++) {
    let target: T | undefined;
    if (mode === 'least-loaded') {
      let best = Infinity;
      for (const k of candidates) {
        const load = k.load + k.unacked + (shares.get(k)?.length ?? 0);
        if (load < best && k.unacked + (shares.get(k)?.length ?? 0) < maxUnacked) {
          best = load;
          target = k;
        }
      }
    } else {
      if (runLeft > 0 && runTarget && runTarget.unacked + shares.get(runTarget)!.length < maxUnacked) {
        target = runTarget;
        runLeft--;
      }
      for (let tries = 0; tries < candidates.length && !target; tries++) {
        const k = candidates[cursor++ % candidates.length]!;
        if (k.unacked + (shares.get(k)?.length ?? 0) < maxUnacked) {
          target = k;
          runTarget = k;
          runLeft = RUN - 1;
        }
      }
    }
    if (!target) break;
    let share = shares.get(target);
    if (!share) shares.set(target, (share = []));
    share.push(pending[taken]!);
  }
  if (cursor > 1e9) cursor = 0;
  return { shares, taken, cursor };
}
