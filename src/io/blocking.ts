// The blocking wait of the *Sync functions, the only code of fdpass that
// blocks the thread: a non-blocking syscall retried after poll(2) says the
// fd is ready, for as long as it says EAGAIN. Everything else waits for
// readiness on the event loop (pump.ts).
import { systemError, type FdPassError } from '../base/errors.js';
import { native } from '../base/native.js';

/**
 * Run `attempt` (a non-blocking syscall on fd: >= 0, or -errno) until it
 * does not say EAGAIN, blocking in poll(2) for `events` in between. Returns
 * its last result, or the error of poll(2).
 */
export function waitWhileAgain(fd: number, events: number, attempt: () => number): number | FdPassError {
  for (;;) {
    const r = attempt();
    if (r !== native.EAGAIN) return r;
    const p = native.poll(fd, events, -1);
    if (p < 0) return systemError(p, 'poll');
  }
}
