// The one queue of callers waiting for something (a message, a connection, a
// value), each optionally bound to an AbortSignal: an abort takes the waiter
// out of the queue and rejects it with an AbortError, so that what would have
// come goes to the next waiter.
import { abortError } from '../base/errors.js';

/** A waiter: settled once, by whoever takes it out of the queue. */
export interface Waiter {
  reject(err: Error): void;
}

export class WaitQueue<W extends Waiter> {
  #items: W[] = [];
  #cleanups: ((() => void) | null)[] = [];
  #head = 0;
  readonly #onAbort: (() => void) | undefined;

  /** `onAbort` runs after an abort took a waiter out (the owner may stop waiting itself). */
  constructor(onAbort?: () => void) {
    this.#onAbort = onAbort;
  }

  /** Waiters in the queue. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /**
   * Queue `w`. With an aborted signal, w is rejected at once (AbortError) and
   * not queued: returns false.
   */
  add(w: W, signal?: AbortSignal): boolean {
    let cleanup: (() => void) | null = null;
    if (signal) {
      if (signal.aborted) {
        w.reject(abortError(signal));
        return false;
      }
      const onAbort = (): void => {
        const i = this.#items.indexOf(w, this.#head);
        if (i < 0) return;
        this.#items.splice(i, 1);
        this.#cleanups.splice(i, 1);
        this.#onAbort?.();
        w.reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    this.#items.push(w);
    this.#cleanups.push(cleanup);
    return true;
  }

  /** The first waiter, left in the queue. */
  peek(): W | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** Take the first waiter out (its signal no longer applies); the caller settles it. */
  shift(): W | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const w = this.#items[this.#head]!;
    const cleanup = this.#cleanups[this.#head];
    this.#items[this.#head] = undefined as unknown as W;
    this.#cleanups[this.#head] = null;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#cleanups.length = 0;
      this.#head = 0;
    }
    cleanup?.();
    return w;
  }

  /** Take `w` out, if it is still queued (its signal no longer applies); the caller settles it. */
  remove(w: W): boolean {
    const i = this.#items.indexOf(w, this.#head);
    if (i < 0) return false;
    const cleanup = this.#cleanups[i];
    this.#items.splice(i, 1);
    this.#cleanups.splice(i, 1);
    cleanup?.();
    return true;
  }

  /** Take every waiter out, in order, handing each to `settle`. */
  drain(settle: (w: W) => void): void {
    for (let w = this.shift(); w !== undefined; w = this.shift()) settle(w);
  }
}
