// The one place that picks the Readiness backend of this environment.
//
// FDPASS_BACKEND=<name> forces one; otherwise the first in `backends` that
// says it works here. To add a backend: one file implementing
// ReadinessBackend (readiness.ts), and one entry here. The choice is made at
// import, so that a bad FDPASS_BACKEND or a backend this runtime cannot run
// is a coded error there, and the thread backend's fds exist from the start.
import { ErrorCodes, FdPassError } from '../base/errors.js';
import { envVar, runtime, unsupportedRuntime, type Runtime } from '../base/runtime.js';
import type { ReadinessBackend } from './readiness.js';
import { threadBackend } from './thread.js';
import { uvBackend } from './uv.js';

interface BackendEntry {
  readonly name: string;
  /** True when the backend works in this runtime. */
  readonly usable: (rt: Runtime) => boolean;
  readonly backend: () => ReadinessBackend;
}

// libuv's poll handles where the runtime runs a real libuv loop: Node. Bun's
// uv_* are crash stubs and Deno's uv_poll does not report events.
// Elsewhere, the epoll thread, which needs only Node-API.
const backends: readonly BackendEntry[] = [
  { name: 'uv', usable: (rt) => rt.name === 'node', backend: () => uvBackend },
  { name: 'thread', usable: () => true, backend: threadBackend },
];

/** The name of the backend for `rt`, FDPASS_BACKEND (`forced`) first. */
export function backendName(rt: Runtime, forced: string | undefined): string {
  if (forced) {
    const entry = backends.find((b) => b.name === forced);
    if (!entry) {
      throw new FdPassError(
        ErrorCodes.BAD_ENV,
        `FDPASS_BACKEND=${forced}: no such readiness backend (known: ${backends.map((b) => b.name).join(', ')})`,
      );
    }
    if (!entry.usable(rt)) throw unsupportedRuntime(`FDPASS_BACKEND=${forced}: ${rt.name} ${rt.version} cannot run the ${forced} backend`);
    return entry.name;
  }
  return (backends.find((b) => b.usable(rt)) ?? backends[backends.length - 1]!).name;
}

const name = backendName(runtime, envVar('FDPASS_BACKEND'));
const chosen: ReadinessBackend = backends.find((b) => b.name === name)!.backend();

/** The backend of this environment, chosen at import (WatchedFd watches with it). */
export function readinessBackend(): ReadinessBackend {
  return chosen;
}
