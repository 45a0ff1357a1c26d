// The one place that picks the Readiness backend of this environment.
//
// FDPASS_BACKEND=<name> forces one; otherwise the first in `backends` that
// says it works here. To add a backend: one file implementing
// ReadinessBackend (readiness.ts), and one entry here.
import { ErrorCodes, FdPassError } from '../errors.js';
import { native } from '../native.js';
import type { Readiness, ReadinessBackend, ReadyCallback } from './readiness.js';
import { uvBackend } from './uv.js';

interface BackendEntry {
  readonly name: string;
  /** True when the backend works in this runtime. */
  readonly usable: () => boolean;
  readonly backend: () => ReadinessBackend;
}

const backends: readonly BackendEntry[] = [{ name: 'uv', usable: () => typeof process.versions.uv === 'string', backend: () => uvBackend }];

function choose(): ReadinessBackend {
  const forced = process.env.FDPASS_BACKEND;
  if (forced) {
    const entry = backends.find((b) => b.name === forced);
    if (!entry) {
      throw new FdPassError(
        ErrorCodes.BAD_ENV,
        `FDPASS_BACKEND=${forced}: no such readiness backend (known: ${backends.map((b) => b.name).join(', ')})`,
      );
    }
    return entry.backend();
  }
  return (backends.find((b) => b.usable()) ?? backends[0]!).backend();
}

let chosen: ReadinessBackend | null = null;

/** The backend of this environment, chosen on first use. */
export function readinessBackend(): ReadinessBackend {
  return (chosen ??= choose());
}

/**
 * Watch an fd with this environment's backend (see Readiness); the watcher
 * owns the fd from now on. On failure the fd is closed and the error thrown.
 */
export function watch(fd: number, onReady: ReadyCallback): Readiness {
  let backend: ReadinessBackend;
  try {
    backend = readinessBackend();
  } catch (err) {
    native.close(fd);
    throw err;
  }
  return backend.watch(fd, onReady);
}
