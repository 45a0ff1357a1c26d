// Which JavaScript runtime loads us, and whether fdpass can run on it. The
// readiness backend each runtime gets is picked in io/backend.ts: libuv's
// poll handles where there is a real libuv loop (Node), the addon's epoll
// watcher thread where there is none (Bun: every uv_* is a crash stub) or
// where it does not report events (Deno).
import { ErrorCodes, FdPassError } from './errors.js';

export interface Runtime {
  readonly name: 'node' | 'bun' | 'deno';
  readonly version: string;
}

const MINIMUM = { bun: [1, 4], deno: [2, 9] } as const;

function versionAtLeast(version: string, [major, minor]: readonly [number, number]): boolean {
  const [a = 0, b = 0] = version.split('.').map((n) => Number.parseInt(n, 10));
  return a > major || (a === major && b >= minor);
}

export function unsupportedRuntime(message: string): FdPassError {
  return new FdPassError(ErrorCodes.UNSUPPORTED_RUNTIME, `fdpass: ${message}`);
}

export function detectRuntime(): Runtime {
  const v = process.versions as Record<string, string | undefined>;
  if (typeof v.bun === 'string') return { name: 'bun', version: v.bun };
  if (typeof v.deno === 'string') return { name: 'deno', version: v.deno };
  return { name: 'node', version: v.node ?? '0' };
}

/** The runtime that loaded us (Node, Bun or Deno). */
export const runtime: Runtime = detectRuntime();

/** An environment variable, or undefined where reading it is not allowed (Deno without --allow-env). */
export function envVar(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/**
 * Throw ERR_FDPASS_UNSUPPORTED_RUNTIME for a runtime fdpass cannot run on:
 * not Linux, Bun < 1.4, Deno < 2.9, or Node-API < 8 (threadsafe functions,
 * cleanup hooks).
 */
export function checkRuntime(
  rt: Runtime = runtime,
  platform: string = process.platform,
  napi: string | undefined = process.versions.napi,
): void {
  if (platform !== 'linux') throw unsupportedRuntime(`fd passing needs Linux; this is ${platform}`);
  if (rt.name !== 'node' && !versionAtLeast(rt.version, MINIMUM[rt.name])) {
    throw unsupportedRuntime(`${rt.name} ${rt.version} is not supported; use ${rt.name} >= ${MINIMUM[rt.name].join('.')}`);
  }
  if (napi !== undefined && Number(napi) < 8) throw unsupportedRuntime(`${rt.name} ${rt.version} offers Node-API ${napi}; fdpass needs 8`);
}
