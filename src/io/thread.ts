// The thread backend of Readiness (readiness.ts): one epoll watcher thread
// per environment (native/watcher_thread.c) that wakes JS through a Node-API
// threadsafe function, one crossing per batch of events. It needs nothing
// but Node-API: the backend of Bun (no libuv loop) and Deno (uv_poll does not
// report events); FDPASS_BACKEND=thread picks it on Node.
//
// The addon speaks poll(2)'s events both ways: interest POLLIN | POLLOUT |
// POLLRDHUP, callbacks with those of the interest, POLLHUP, and POLLERR
// (after which it has stopped watching). Keep-alive as libuv's: the
// environment is held open while some fd has an interest, not while all are
// idle. A stateless adapter: the interest is kept by WatchedFd (and, for
// re-arming its one-shot epoll entries, by the addon).
import { systemError } from '../base/errors.js';
import { native, type Watcher } from '../base/native.js';
import type { Readiness, ReadinessBackend, ReadyCallback } from './readiness.js';

class ThreadReadiness implements Readiness {
  #handle: Watcher | null;

  constructor(fd: number, onReady: ReadyCallback) {
    // The addon holds onReady weakly while the interest is 0: the owner's
    // watcher keeps it.
    const handle = native.threadWatch(fd, onReady);
    if (typeof handle === 'number') {
      native.close(fd);
      throw systemError(handle, 'epoll_ctl');
    }
    this.#handle = handle;
  }

  setInterest(events: number): number {
    return this.#handle ? native.threadSetEvents(this.#handle, events) : 0;
  }

  close(closeFd: boolean): number {
    const handle = this.#handle;
    if (!handle) return 0;
    this.#handle = null;
    return native.threadCloseWatcher(handle, closeFd);
  }
}

/**
 * The thread backend. Its thread, epoll fd and eventfd start with it (when
 * backend.ts picks it, at import), as libuv's own fds exist from the start,
 * and end with the environment.
 */
export function threadBackend(): ReadinessBackend {
  const r = native.threadStart();
  if (r < 0) throw systemError(r, 'epoll_create1');
  return { name: 'thread', armCall: 'epoll_ctl', watch: (fd, onReady) => new ThreadReadiness(fd, onReady) };
}
