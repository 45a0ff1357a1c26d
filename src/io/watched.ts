// WatchedFd: an fd and its readiness watcher, the only way fdpass watches an
// fd (the read pump, pump.ts, stands on it; so does nothing else). It owns
// the fd until close() or release(), keeps the interest (the backends keep
// none), hands on only the events of the interest, and turns POLLERR and
// POLLHUP into the events of the interest: the syscall that follows reports
// what happened (an error, end of file) the way the owner already handles it.
import { readinessBackend } from './backend.js';
import { POLLERR, POLLHUP, type Readiness, type ReadinessBackend } from './readiness.js';
import { systemError } from '../base/errors.js';

export { POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP } from './readiness.js';

export class WatchedFd {
  #fd: number;
  #io: Readiness | null;
  #interest = 0;
  readonly #armCall: string;
  // Held here: the backend holds it weakly while the interest is 0.
  readonly #onEvents: (events: number) => void;

  /**
   * Watch `fd`, which this object owns from now on (on failure the fd is
   * closed and the error thrown). `onReady` gets the events of the interest
   * (POLLIN, POLLOUT, POLLRDHUP), with POLLERR or POLLHUP all of them. The
   * owner keeps this object reachable for as long as it wants callbacks.
   * `backend`: this environment's unless given (tests).
   */
  constructor(fd: number, onReady: (events: number) => void, backend: ReadinessBackend = readinessBackend()) {
    this.#onEvents = (events) => {
      // The fd failed or hung up: what the owner waits for will not come as
      // such; its next syscall tells what happened. POLLERR stopped watching.
      if (events & (POLLERR | POLLHUP)) events |= this.#interest;
      else events &= this.#interest;
      if (events & POLLERR) this.#interest = 0;
      if (events) onReady(events);
    };
    this.#armCall = backend.armCall;
    this.#io = backend.watch(fd, this.#onEvents);
    this.#fd = fd;
  }

  /** The fd, or -1 once closed or released. */
  get fd(): number {
    return this.#fd;
  }

  /** The events watched for now. */
  get interest(): number {
    return this.#interest;
  }

  /**
   * Watch for `events` (POLLIN | POLLOUT | POLLRDHUP; 0 stops); nothing once
   * closed. Null, or the error of a backend that could not arm the fd (the
   * interest is 0 then: nothing will come).
   */
  want(events: number): Error | null {
    if (events === this.#interest || !this.#io) return null;
    this.#interest = events;
    const r = this.#io.setInterest(events);
    if (r >= 0) return null;
    this.#interest = 0;
    return systemError(r, this.#armCall);
  }

  /** Stop watching and close the fd. Returns 0 or -errno. Idempotent. */
  close(): number {
    return this.#shut(true);
  }

  /** Stop watching and hand the fd back, open. */
  release(): number {
    const fd = this.#fd;
    this.#shut(false);
    return fd;
  }

  #shut(closeFd: boolean): number {
    const io = this.#io;
    if (!io) return 0;
    this.#io = null;
    this.#fd = -1;
    this.#interest = 0;
    return io.close(closeFd);
  }
}
