// The read pump: the one loop that turns readiness into reads, under every
// reader of fdpass (sockets, streams, ptys, listeners, cluster channels,
// pidfds, seccomp notifiers), as tokio's Registration::poll_io is under
// every tokio socket. A reader supplies one step (read a batch, or accept
// one, or receive one notification, and hand on what came) and says when it
// wants to read; the pump owns the rest:
// - EAGAIN: a step that finds the fd empty (or that may read only once per
//   readiness) makes the pump wait for POLLIN before stepping again; a read
//   that would only find the fd empty again is a wasted syscall;
// - the budget: at most BUDGET steps per wake-up;
// - the interest: POLLIN while someone wants to read (or the budget cut a
//   run short), POLLOUT while sends wait, POLLRDHUP in hang-up mode, and
//   nothing once reading is over; a failed re-arm is an error on the reader
//   (nothing would ever wake it again);
// - EOF, POLLHUP and POLLERR: they wake the reader's step, whose syscall says
//   what happened; a step that ends reading says so (ENDED), and a POLLERR
//   that no read explains is an error on the reader (the backend stopped
//   watching, so re-arming would only bring it back on the next turn).
// Hang-up mode is the cluster primary's "woken on hang-up only, read lazily":
// the fd is watched for POLLRDHUP always and for POLLIN only while someone
// wants to read; readNow() reads on the owner's schedule, and a hang-up
// reads whatever is left, the end of file included.
import { ErrorCodes, FdPassError } from '../base/errors.js';
import { native } from '../base/native.js';
import type { ReadinessBackend } from './readiness.js';
import { POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, WatchedFd } from './watched.js';

/** A step's result: the fd may hold more; step again. */
export const MORE = 0;
/** A step's result: the fd was found empty, or may be read only once per readiness: wait for POLLIN. */
export const DRAINED = 1;
/** A step's result: reading is over (end of file, a hang-up, or the reader closed). */
export const ENDED = 2;

// Steps per wake-up. A step reads a batch (up to 64 messages or connections,
// or 512 KiB of a stream), so 4 steps amortise the wake-up over hundreds of
// messages, while what one synchronous pass leaves open stays bounded: an
// Acceptor without a budget took 10,000 connections of a flood in one pass,
// each socket and every fd its handler received open until the pass ended
// (RLIMIT_NOFILE). Past the budget the pump yields to the event loop (other
// fds, timers, the microtasks of what it handed out) and the fd's readiness,
// level-triggered, brings it back on the next turn.
export const BUDGET = 4;

const EAGAIN = native.EAGAIN;

/** What a reader gives the pump. */
export interface PumpReader {
  /** True while someone wants what a step reads. */
  demand(): boolean;
  /**
   * Read once and hand on what came. Returns MORE, DRAINED or ENDED, or the
   * -errno of the read: -EAGAIN (nothing there) is DRAINED, and any other is
   * passed to readFailed.
   */
  step(): number;
  /** A step's read failed with -errno (not EAGAIN). The pump goes on while there is demand. */
  readFailed(errno: number): void;
  /** Watching failed: a re-arm, or a POLLERR that no read explained. Nothing wakes the reader any more. */
  failed(err: Error): void;
  /** True while sends wait for room (POLLOUT is watched). */
  writePending?(): boolean;
  /** POLLOUT: send what waits. */
  writable?(): void;
  /** After each run of steps (the reader may act on all it was handed at once). */
  ran?(): void;
}

export interface PumpOptions {
  /** Hang-up mode: watch POLLRDHUP always, POLLIN only on demand; a hang-up reads to the end. */
  hangup?: boolean;
  /** The readiness backend (tests); this environment's by default. */
  backend?: ReadinessBackend;
}

export class Pump {
  readonly #io: WatchedFd;
  readonly #reader: PumpReader;
  readonly #hangup: boolean;
  // The last step found the fd empty: wait for POLLIN before stepping again.
  #drained = false;
  // The budget cut the last run short with more to read: watch POLLIN regardless of demand.
  #more = false;
  #ended = false;
  #running = false;
  // A POLLERR came and no read has reported an error since.
  #pollErr = false;
  // POLLIN stays armed until this runs (see update).
  #disarm: NodeJS.Immediate | null = null;

  /** Watch `fd` for `reader`: the pump owns the fd from now on (closed at once if watching fails). */
  constructor(fd: number, reader: PumpReader, options: PumpOptions = {}) {
    this.#reader = reader;
    this.#hangup = options.hangup ?? false;
    this.#io = new WatchedFd(fd, (events) => this.#onReady(events), options.backend);
  }

  /** The fd, or -1 once closed or released. */
  get fd(): number {
    return this.#io.fd;
  }

  /** True once a step said ENDED, or end() was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Someone wants to read: step now, unless the fd was found empty (its
   * readiness says when there is more), then watch for what is wanted.
   */
  pump(): void {
    this.#run(false);
  }

  /** Read now, wanted or not, up to the budget: a reader that reads on its own schedule. */
  readNow(): void {
    this.#drained = false;
    this.#run(true);
  }

  /** Reading is over (the reader learnt it some other way): POLLIN is watched no more. */
  end(): void {
    this.#ended = true;
    this.update();
  }

  /** Watch for what is wanted now (after demand or pending sends changed). */
  update(): void {
    if (this.#running || this.#io.fd < 0) return;
    const reading = !this.#ended && (this.#more || this.#reader.demand());
    let events = (reading ? POLLIN : 0) | (this.#hangup && !this.#ended ? POLLRDHUP : 0) | (this.#reader.writePending?.() ? POLLOUT : 0);
    // Demand that ends after a read mostly comes back within the same turn
    // of the loop (await recv() in a loop, a request and its answer): POLLIN
    // stays armed until the loop's check phase, and is dropped then only if
    // nobody asked again. Dropping and re-arming it at once cost libuv three
    // epoll_ctl calls per round trip (stop; then ADD, failing with EEXIST,
    // and MOD). Meanwhile an fd that fires finds no demand and reads nothing.
    if (!reading && !this.#ended && this.#io.interest & POLLIN) {
      events |= POLLIN;
      this.#disarm ??= setImmediate(this.#onDisarm);
    }
    const err = this.#io.want(events);
    if (err) this.#reader.failed(err);
  }

  readonly #onDisarm = (): void => {
    this.#disarm = null;
    if (this.#running || this.#io.fd < 0 || this.#ended || this.#more || this.#reader.demand()) return;
    const err = this.#io.want(this.#io.interest & ~POLLIN);
    if (err) this.#reader.failed(err);
  };

  /** Stop watching and close the fd. Returns 0 or -errno of close(2). */
  close(): number {
    this.#cancelDisarm();
    return this.#io.close();
  }

  /** Stop watching and hand the fd back, open. */
  release(): number {
    this.#cancelDisarm();
    return this.#io.release();
  }

  #cancelDisarm(): void {
    if (this.#disarm) clearImmediate(this.#disarm);
    this.#disarm = null;
  }

  #onReady(events: number): void {
    if (events & POLLOUT) {
      this.#reader.writable?.();
      if (this.#io.fd < 0) return;
    }
    if (events & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
      this.#drained = false;
      if (events & POLLERR) this.#pollErr = true;
      // Hang-up mode: the peer went away; read what it left, the end included.
      this.#run(this.#hangup && (events & (POLLRDHUP | POLLHUP)) !== 0);
    } else this.update();
  }

  #run(force: boolean): void {
    if (this.#running || this.#io.fd < 0) return;
    this.#running = true;
    // Hang-up mode: a run the budget cut short goes on, wanted or not.
    force ||= this.#more && this.#hangup;
    this.#more = false;
    try {
      for (let steps = 0; !this.#ended && !this.#drained && (force || this.#reader.demand()); steps++) {
        if (steps === BUDGET) {
          this.#more = true;
          break;
        }
        const r = this.#reader.step();
        if (this.#io.fd < 0) return;
        if (r === MORE) continue;
        if (r === DRAINED || r === EAGAIN) {
          this.#drained = true;
          if (this.#pollErr) {
            this.#pollErr = false;
            this.#reader.failed(new FdPassError(ErrorCodes.INTERNAL, 'the fd reported POLLERR and reading it reported nothing'));
            return;
          }
        } else if (r === ENDED) this.#ended = true;
        else {
          this.#pollErr = false;
          this.#reader.readFailed(r);
          if (this.#io.fd < 0) return;
        }
      }
    } finally {
      this.#running = false;
    }
    this.#reader.ran?.();
    this.update();
  }
}
