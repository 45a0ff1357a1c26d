// The libuv backend of Readiness (readiness.ts): one uv_poll_t per fd on the
// loop of the calling environment, through the addon's watch, setEvents and
// closeWatcher (native/watcher.c). Node only: Bun's uv_* functions are stubs
// that abort the process, and Deno's uv_poll hands the callback the requested
// mask instead of the real events. A stateless adapter: it translates events
// both ways and keeps no interest (WatchedFd does).
import { systemError } from '../base/errors.js';
import { native, type Watcher } from '../base/native.js';
import { POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDHUP, type Readiness, type ReadinessBackend, type ReadyCallback } from './readiness.js';

const { UV_READABLE, UV_WRITABLE, UV_DISCONNECT } = native;

class UvReadiness implements Readiness {
  #handle: Watcher | null = null;
  readonly #fd: number;
  readonly #onReady: ReadyCallback;
  // The addon holds this weakly while the interest is 0: the watcher keeps it.
  readonly #onPoll = (status: number): void => this.#ready(status);

  constructor(fd: number, onReady: ReadyCallback) {
    this.#fd = fd;
    this.#onReady = onReady;
    const handle = native.watch(fd, this.#onPoll);
    if (typeof handle === 'number') {
      native.close(fd);
      throw systemError(handle, 'uv_poll_init');
    }
    this.#handle = handle;
  }

  #ready(status: number): void {
    // libuv stops the handle on POLLERR and reports UV_EBADF.
    if (status < 0) return this.#onReady(POLLERR);
    let events = (status & UV_READABLE ? POLLIN : 0) | (status & UV_WRITABLE ? POLLOUT : 0);
    // libuv folds POLLHUP into the interest's events, and into UV_DISCONNECT
    // (with a peer's half-close, EPOLLRDHUP): ask the kernel which it is.
    if (status & UV_DISCONNECT) {
      events |= POLLRDHUP;
      const revents = native.poll(this.#fd, 0, 0);
      if (revents > 0 && revents & POLLHUP) events |= POLLHUP;
    }
    this.#onReady(events);
  }

  setInterest(events: number): number {
    if (!this.#handle) return 0;
    const uv =
      (events & POLLIN ? UV_READABLE | UV_DISCONNECT : 0) | (events & POLLOUT ? UV_WRITABLE : 0) | (events & POLLRDHUP ? UV_DISCONNECT : 0);
    return native.setEvents(this.#handle, uv);
  }

  close(closeFd: boolean): number {
    const handle = this.#handle;
    if (!handle) return 0;
    this.#handle = null;
    return native.closeWatcher(handle, closeFd);
  }
}

export const uvBackend: ReadinessBackend = {
  name: 'uv',
  armCall: 'uv_poll_start',
  watch: (fd, onReady) => new UvReadiness(fd, onReady),
};
