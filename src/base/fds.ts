// FdLike: what users hand over when they send an fd, and the checks on fds.
import type { Server, Socket } from 'node:net';
import { constants } from 'node:os';
import { Socket as DgramSocketClass, type Socket as DgramSocket } from 'node:dgram';
import { FdPassError, invalidArgType, outOfRange, systemError } from './errors.js';
import { native } from './native.js';

/** Anything that owns an open file descriptor. */
export interface HasFd {
  readonly fd: number;
}

/**
 * An fd number, or a Node object that owns one: `net.Socket`, `net.Server`,
 * `dgram.Socket`, `fs.promises.FileHandle`, an `FdSocket`/`FdServer`, or any
 * object with a numeric `fd`. Sending does not take ownership: the caller
 * still owns (and closes) what it sent.
 */
export type FdLike = number | HasFd | Socket | Server | DgramSocket;

/** SCM_MAX_FD: the most fds one message can carry. */
export const MAX_FDS = 253;
const INT32_MAX = 2 ** 31 - 1;

interface WithHandle {
  _handle?: { fd?: unknown } | null;
}

function dgramFd(obj: object): number | undefined {
  // A dgram.Socket keeps its handle in a symbol-keyed state object; its
  // `_handle` is a deprecated getter (DEP0112), so it is never read.
  for (const sym of Object.getOwnPropertySymbols(obj)) {
    const state = (obj as Record<symbol, unknown>)[sym] as { handle?: { fd?: unknown } } | undefined;
    if (state && typeof state === 'object' && state.handle && typeof state.handle.fd === 'number') {
      return state.handle.fd;
    }
  }
  return undefined;
}

function handleFd(obj: object): number | undefined {
  if (obj instanceof DgramSocketClass) return dgramFd(obj);
  const h = (obj as WithHandle)._handle;
  if (h && typeof h.fd === 'number') return h.fd;
  return dgramFd(obj);
}

/** An fd number: an integer in 0..2^31-1. */
function isFdNumber(fd: unknown): fd is number {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 && fd <= INT32_MAX;
}

/** Validate an fd number: an integer in 0..2^31-1. */
export function checkFdNumber(fd: unknown, name = 'fd'): number {
  if (typeof fd !== 'number') throw invalidArgType(name, 'of type number or an object that owns an fd', fd);
  if (!Number.isInteger(fd) || fd < 0 || fd > INT32_MAX) throw outOfRange(name, `an integer >= 0 and <= ${INT32_MAX}`, fd);
  return fd;
}

/** The fd number an FdLike stands for; throws TypeError/RangeError or EBADF. */
export function toFd(value: unknown, name = 'fd'): number {
  if (typeof value === 'number') return checkFdNumber(value, name);
  if (value === null || typeof value !== 'object') {
    throw invalidArgType(name, 'an fd number or an object that owns an fd (net.Socket, net.Server, dgram.Socket, FileHandle)', value);
  }
  let fd: unknown = (value as Partial<HasFd>).fd;
  if (typeof fd !== 'number') fd = handleFd(value);
  if (typeof fd !== 'number') {
    throw invalidArgType(name, 'an fd number or an object that owns an fd (net.Socket, net.Server, dgram.Socket, FileHandle)', value);
  }
  if (fd < 0) throw new FdPassError('EBADF', `${name}: the object holds no open fd (closed?)`, { errno: -constants.errno.EBADF });
  return checkFdNumber(fd, name);
}

/** Resolve a list of FdLike into an Int32Array of at most 253 fds. */
export function toFdArray(fds: unknown, name = 'fds'): Int32Array | null {
  if (fds === undefined || fds === null) return null;
  if (!Array.isArray(fds)) throw invalidArgType(name, 'an array of fds', fds);
  if (fds.length > MAX_FDS) throw outOfRange(`${name}.length`, `<= ${MAX_FDS} (SCM_MAX_FD)`, fds.length);
  if (fds.length === 0) return null;
  const out = new Int32Array(fds.length);
  for (let i = 0; i < fds.length; i++) {
    const fd = fds[i] as unknown;
    // The common case without building an argument name per fd.
    out[i] = isFdNumber(fd) ? fd : toFd(fd, `${name}[${i}]`);
  }
  return out;
}

let closeScratch = new Int32Array(MAX_FDS);

/**
 * Close fds you own (a received message's, say) in one call into the addon:
 * close(2) for each, without the per-call cost of `fs.closeSync` (which goes
 * through libuv's request machinery), a fifth of a microsecond per fd here.
 * Every fd is closed even when one fails; the first failure (EBADF: not an
 * open fd) is thrown after. Numbers are checked before anything is closed.
 */
export function closeFds(fds: readonly number[]): void {
  if (!Array.isArray(fds)) throw invalidArgType('fds', 'an array of fd numbers', fds);
  const n = fds.length;
  if (n === 1) {
    // The common case (runc's one fd): no typed array to hand over.
    const fd = fds[0] as unknown;
    const r = native.close(isFdNumber(fd) ? fd : checkFdNumber(fd, 'fds[0]'));
    if (r < 0) throw systemError(r, 'close');
    return;
  }
  if (n > closeScratch.length) closeScratch = new Int32Array(n);
  const out = closeScratch;
  for (let i = 0; i < n; i++) {
    const fd = fds[i] as unknown;
    out[i] = isFdNumber(fd) ? fd : checkFdNumber(fd, `fds[${i}]`);
  }
  if (n === 0) return;
  const r = native.closeMany(out, n);
  if (r < 0) throw systemError(r, 'close');
}

/**
 * Close fds[from..to), fds the library owns and knows to be open (nothing is
 * checked), in one call into the addon. Returns 0 or -errno of the first failure.
 */
export function closeRange(fds: readonly number[], from: number, to: number): number {
  const n = to - from;
  if (n <= 0) return 0;
  if (n > closeScratch.length) closeScratch = new Int32Array(n);
  for (let i = 0; i < n; i++) closeScratch[i] = fds[from + i]!;
  return native.closeMany(closeScratch, n);
}
