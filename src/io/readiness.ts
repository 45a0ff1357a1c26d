// Readiness: the one interface through which fdpass watches an fd. Every
// socket, stream, pty and listener learns when its fd is ready from an object
// of this shape; a backend (backend.ts picks one) implements it: libuv's poll
// handle on Node (uv.ts), others where libuv is missing.
//
// The contract every backend keeps (test/io/readiness.test.ts):
// - watch(fd, onReady) takes the fd: closing the watcher closes it (or hands
//   it back, release), and so do the end of the environment (a worker that
//   exits) and the garbage collection of a watcher nobody references.
// - setInterest(events): POLLIN, POLLOUT and POLLRDHUP in any mix, or 0
//   (stopped). Level-triggered: while the fd stays ready for an event of the
//   interest, onReady runs again on each turn of the loop. POLLRDHUP alone
//   watches for the peer's going away only: data arriving does not wake the
//   process (the kernel's epoll callback drops wake-ups outside the
//   interest), which is how a reader that drains on its own schedule still
//   learns of a hang-up.
// - onReady(events) gets the events as poll(2) names them: POLLIN, POLLOUT,
//   POLLRDHUP, POLLHUP (the peer hung up), POLLERR (an error is pending on
//   the fd). With POLLERR the backend stops watching: the next syscall on the
//   fd reports and clears the error; set the interest again to go on.
// - While the interest is 0 the backend holds onReady weakly: the owner keeps
//   its watcher (and so onReady) reachable, or lets both be collected.
//
// A backend is a stateless adapter: it keeps no interest of its own and may
// report more than the interest (libuv folds a hang-up into every event).
// WatchedFd (watched.ts) keeps the interest, once, filters what comes
// against it, and is the only user of backends.
import { native } from '../base/native.js';

export const POLLIN: number = native.POLLIN;
export const POLLOUT: number = native.POLLOUT;
export const POLLERR: number = native.POLLERR;
export const POLLHUP: number = native.POLLHUP;
export const POLLRDHUP: number = native.POLLRDHUP;

/** Called with the events that happened (POLLIN, POLLOUT, POLLHUP, POLLERR). */
export type ReadyCallback = (events: number) => void;

/** One fd under watch. */
export interface Readiness {
  /** Watch for `events` (POLLIN | POLLOUT | POLLRDHUP; 0 stops). Returns 0 or -errno. */
  setInterest(events: number): number;
  /**
   * Stop watching, for good. `closeFd` true closes the fd; false hands it
   * back to the caller, open. Returns 0 or -errno of close(2). Idempotent.
   */
  close(closeFd: boolean): number;
}

/** A way of watching fds: one per environment, chosen in backend.ts. */
export interface ReadinessBackend {
  /** Its name, as FDPASS_BACKEND names it ('uv', ...). */
  readonly name: string;
  /** The call a failed setInterest is named after in errors ('uv_poll_start', 'epoll_ctl'). */
  readonly armCall: string;
  /**
   * Watch `fd`, which the watcher owns from now on. On failure the fd is
   * closed and a system error thrown.
   */
  watch(fd: number, onReady: ReadyCallback): Readiness;
}
