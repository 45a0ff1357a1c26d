// The fd store (FDSTORE=1): fds a process hands the supervisor to keep
// across its restarts, by name, given back to the next process after the
// listeners, as systemd hands them (sd_notify(3), "FDSTORE=1").
//
// FDPOLL: systemd drops a stored fd that reports POLLHUP or POLLERR (a
// connection whose peer is gone, a pipe without its reader) unless it was
// stored with FDPOLL=0. Here the check is made when the store is read (a
// process starts, `stored` is asked): the next process never gets a dead fd,
// without a watcher per stored fd in between.
import { discardFds, native } from '../internal.js';

export class FdStore {
  readonly #byName = new Map<string, number[]>();
  /** Stored with FDPOLL=0: never dropped for a hang-up. */
  readonly #unpolled = new Set<number>();
  #count = 0;
  readonly max: number;
  readonly #log: (line: string) => void;

  constructor(max: number, log: (line: string) => void) {
    this.max = max;
    this.#log = log;
  }

  get count(): number {
    return this.#count;
  }

  /** Keep fds under name (they are the store's from now on). */
  add(name: string, fds: readonly number[], poll: boolean): void {
    this.#byName.set(name, [...(this.#byName.get(name) ?? []), ...fds]);
    if (!poll) for (const fd of fds) this.#unpolled.add(fd);
    this.#count += fds.length;
  }

  /** Close and forget the fds under name; how many there were. */
  remove(name: string): number {
    const gone = this.#byName.get(name);
    if (!gone) return 0;
    this.#byName.delete(name);
    this.#forget(gone);
    return gone.length;
  }

  /** [name, fds] of what is stored, once those that hung up are dropped. */
  entries(): [string, number[]][] {
    const dead = native.POLLHUP | native.POLLERR;
    for (const [name, fds] of this.#byName) {
      const hungUp = (fd: number): boolean => {
        const revents = native.poll(fd, 0, 0); // POLLHUP and POLLERR come unasked
        return revents > 0 && (revents & dead) !== 0;
      };
      const gone = fds.filter((fd) => !this.#unpolled.has(fd) && hungUp(fd));
      if (gone.length === 0) continue;
      const kept = fds.filter((fd) => !gone.includes(fd));
      if (kept.length > 0) this.#byName.set(name, kept);
      else this.#byName.delete(name);
      this.#forget(gone);
      this.#log(`stored fd(s) of "${name}" hung up (POLLHUP or POLLERR): dropped ${gone.length}, as systemd does without FDPOLL=0`);
    }
    return [...this.#byName];
  }

  clear(): void {
    for (const fds of this.#byName.values()) this.#forget(fds);
    this.#byName.clear();
  }

  #forget(fds: readonly number[]): void {
    for (const fd of fds) this.#unpolled.delete(fd);
    this.#count -= fds.length;
    discardFds(fds);
  }
}
