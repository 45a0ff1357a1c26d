// The one place that sends a message with fds, and the one ordered send
// queue. The kernel attaches a sendmsg's fds to its first byte: a stream may
// take fewer bytes than given, and the rest goes without the fds.
import { sendError } from '../base/errors.js';
import { native } from '../base/native.js';

const RESOLVED: Promise<void> = Promise.resolve();

/** Data on its way into the kernel, with the fds of its first byte (null once sent). */
export interface Outgoing {
  data: Uint8Array;
  offset: number;
  fds: Int32Array | null;
}

/**
 * Send what is left of `out` on fd (one sendmsg at least: an empty datagram
 * is a message). Returns 0 once the kernel has all of it, else the -errno
 * that stopped it (-EAGAIN: the socket is full), with `out` advanced past
 * what was sent.
 */
export function sendSome(fd: number, out: Outgoing): number {
  do {
    const r = native.sendmsg(fd, out.data, out.offset, out.data.length - out.offset, out.fds, out.fds ? out.fds.length : 0, null);
    if (r < 0) return r;
    // The fds went with the first byte; the rest goes alone.
    out.fds = null;
    out.offset += r;
  } while (out.offset < out.data.length);
  return 0;
}

interface Queued extends Outgoing {
  done: (err: Error | null) => void;
}

/**
 * Sends in order on one fd: what the kernel cannot take now waits here
 * (backpressure) until flush() is called on POLLOUT. Each send settles once
 * the kernel has all of it, or with the error that stopped it; close()
 * settles whatever is left (settle-on-close).
 */
export class SendQueue {
  #queue: Queued[] = [];
  #head = 0;
  #drained: ((err: Error | null) => void)[] = [];
  #sent = 0;
  readonly #onChange: () => void;

  /** `onChange` runs when the queue goes from empty to not (the owner watches POLLOUT). */
  constructor(onChange: () => void) {
    this.#onChange = onChange;
  }

  /** Sends waiting for room in the kernel. */
  get length(): number {
    return this.#queue.length - this.#head;
  }

  /** Bytes the kernel has taken. */
  get bytesSent(): number {
    return this.#sent;
  }

  /**
   * Send now when nothing waits ahead (the common case: no poll at all), else
   * queue a copy of what the caller may reuse once this returns (`fds` too,
   * when `copyFds`). fd -1: not connected yet, everything waits.
   */
  send(fd: number, data: Uint8Array, fds: Int32Array | null, copyFds: boolean): Promise<void> {
    if (fd >= 0 && this.#head === this.#queue.length) {
      const r = native.sendmsg(fd, data, 0, data.length, fds, fds ? fds.length : 0, null);
      if (r === data.length) {
        this.#sent += r;
        return RESOLVED;
      }
      if (r < 0 && r !== native.EAGAIN) return Promise.reject(sendError(r, fds !== null));
      if (r > 0) {
        // A partial write: the fds went with the first byte.
        this.#sent += r;
        return this.#promise(Uint8Array.prototype.slice.call(data, r), null);
      }
    }
    return this.#promise(Uint8Array.prototype.slice.call(data), fds && copyFds ? fds.slice() : fds);
  }

  #promise(data: Uint8Array, fds: Int32Array | null): Promise<void> {
    return new Promise<void>((resolve, reject) => this.write(-1, data, fds, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Queue `data` as it is (the caller does not touch it until `done`), and
   * send at once if it is first in line and fd >= 0.
   */
  write(fd: number, data: Uint8Array, fds: Int32Array | null, done: (err: Error | null) => void): void {
    const wasEmpty = this.#head === this.#queue.length;
    this.#queue.push({ data, offset: 0, fds, done });
    if (wasEmpty && fd >= 0) this.flush(fd);
    if (this.#head < this.#queue.length && wasEmpty) this.#onChange();
  }

  /** Send what the kernel takes now, in order; on POLLOUT and once connected. */
  flush(fd: number): void {
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head]!;
      const before = w.offset;
      const r = sendSome(fd, w);
      this.#sent += w.offset - before;
      if (r === native.EAGAIN) break;
      this.#queue[this.#head++] = undefined as unknown as Queued;
      // w.fds is null once a first sendmsg took them: a later error is not theirs.
      w.done(r < 0 ? sendError(r, w.fds !== null) : null);
    }
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
      const drained = this.#drained;
      this.#drained = [];
      for (const f of drained) f(null);
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Run `f(null)` once nothing waits (now, if nothing does), or `f(err)` at close(err). */
  whenDrained(f: (err: Error | null) => void): void {
    if (this.#head === this.#queue.length) f(null);
    else this.#drained.push(f);
  }

  /** Settle every waiting send, and every whenDrained, with `err`. */
  close(err: Error): void {
    const queue = this.#queue;
    const head = this.#head;
    const drained = this.#drained;
    this.#queue = [];
    this.#head = 0;
    this.#drained = [];
    for (let i = head; i < queue.length; i++) queue[i]!.done(err);
    for (const f of drained) f(err);
  }
}
