// WatchedFd: an fd and its readiness watcher, the one thing transports hold
// to learn when their fd is ready. It owns the fd until close() or
// release(), and turns POLLERR and POLLHUP into a call to try what the owner
// was waiting for: the syscall that follows reports what happened (an error,
// end of file) the way the owner already handles it.
import { watch } from './backend.js';
import { POLLERR, POLLHUP, type Readiness } from './readiness.js';

export { POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP } from './readiness.js';

export class WatchedFd {
  #fd: number;
  #io: Readiness | null;
  #interest = 0;

  /**
   * Watch `fd`, which this object owns from now on (on failure the fd is
   * closed and the error thrown). `onReady` gets POLLIN and POLLOUT (with
   * POLLERR or POLLHUP, also the events of the interest at the time). The
   * owner keeps this object reachable for as long as it wants callbacks.
   */
  constructor(fd: number, onReady: (events: number) => void) {
    this.#io = watch(fd, (events) => {
      // The fd failed or hung up: what the owner waits for will not come as
      // such; its next syscall tells what happened. POLLERR stopped watching.
      if (events & (POLLERR | POLLHUP)) events |= this.#interest;
      if (events & POLLERR) this.#interest = 0;
      onReady(events);
    });
    this.#fd = fd;
  }

  /** The fd, or -1 once closed or released. */
  get fd(): number {
    return this.#fd;
  }

  /** Watch for `events` (POLLIN | POLLOUT | POLLRDHUP; 0 stops); nothing once closed. */
  want(events: number): void {
    if (events === this.#interest || !this.#io) return;
    this.#interest = events;
    this.#io.setInterest(events);
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
