// Socket operations on fds: create, connect (with the EAGAIN retry), pair,
// bind and listen (replacing a stale socket file), adopt an fd, and what the
// kernel says about a socket (credentials, type). Each returns fds it
// created to the caller, or closes them before it throws.
import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { constants, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResolvedAddress } from '../base/address.js';
import { ErrorCodes, FdPassError, abortError, invalidArgType, invalidArgValue, systemError } from '../base/errors.js';
import { checkFdNumber } from '../base/fds.js';
import { native } from '../base/native.js';

const { EADDRINUSE, ECONNREFUSED, ENOPROTOOPT } = constants.errno;

/** Credentials of the peer process, from SO_PEERCRED (as of connect()). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

const peerBuf = new Int32Array(3);
const infoBuf = new Int32Array(3);
const pairBuf = new Int32Array(2);

/** SO_PEERCRED of a socket fd. */
export function peerCredentials(fd: number): PeerCredentials {
  const r = native.peerCred(fd, peerBuf);
  if (r < 0) throw systemError(r, 'getsockopt');
  return { pid: peerBuf[0]!, uid: peerBuf[1]!, gid: peerBuf[2]! };
}

/** SO_TYPE, SO_DOMAIN and SO_ACCEPTCONN of an fd; ENOTSOCK if it is no socket. */
export function socketInfo(fd: number): { type: number; domain: number; listening: boolean } {
  const r = native.sockInfo(fd, infoBuf);
  if (r < 0) throw systemError(r, 'getsockopt');
  return { type: infoBuf[0]!, domain: infoBuf[1]!, listening: infoBuf[2] !== 0 };
}

/** `acceptFds` of the options that take it: a boolean, true by default. */
export function checkAcceptFds(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw invalidArgType('acceptFds', 'of type boolean', value);
  return value;
}

/**
 * `acceptFds: false`: turn SO_PASSRIGHTS off, so that the kernel refuses any
 * fd sent to this socket (the sender's sendmsg fails with EPERM; nothing
 * arrives to be closed). A listener's setting carries over to the sockets
 * it accepts. Linux >= 6.16; before, ERR_FDPASS_UNSUPPORTED_KERNEL.
 */
export function refuseFds(fd: number): void {
  setSocketFlag(fd, native.SO_PASSRIGHTS, false, 'acceptFds: false needs SO_PASSRIGHTS (Linux >= 6.16)');
}

/** `passPidfd` of the options that take it: a boolean, false by default; only for 'dgram' and 'seqpacket'. */
export function checkPassPidfd(value: unknown, type: number): boolean {
  if (value === undefined || value === false) return false;
  if (typeof value !== 'boolean') throw invalidArgType('passPidfd', 'of type boolean', value);
  if (type === native.SOCK_STREAM) {
    throw invalidArgValue(
      'passPidfd',
      "needs a 'dgram' or 'seqpacket' socket (a stream's reads join the bytes of several sends, so there is no sender per message)",
      value,
    );
  }
  return true;
}

/**
 * `passPidfd: true`: turn SO_PASSPIDFD on, so that every message received
 * brings a pidfd of its sender (SCM_PIDFD). A listener's setting carries
 * over to the sockets it accepts. Linux >= 6.5; before,
 * ERR_FDPASS_UNSUPPORTED_KERNEL.
 */
export function passPidfds(fd: number): void {
  setSocketFlag(fd, native.SO_PASSPIDFD, true, 'passPidfd: true needs SO_PASSPIDFD (Linux >= 6.5)');
}

/**
 * A boolean socket option of a kernel newer than some users': ENOPROTOOPT,
 * where the kernel lacks it, is ERR_FDPASS_UNSUPPORTED_KERNEL saying what
 * `needs`; any other failure a system error.
 */
function setSocketFlag(fd: number, option: number, on: boolean, needs: string): void {
  const r = native.setSocketFlag(fd, option, on ? 1 : 0);
  if (r === 0) return;
  if (r === -ENOPROTOOPT) {
    throw new FdPassError(ErrorCodes.UNSUPPORTED_KERNEL, `${needs}; this kernel (${release()}) lacks it`, {
      errno: r,
      syscall: 'setsockopt',
    });
  }
  throw systemError(r, 'setsockopt');
}

/**
 * A new AF_UNIX socket, non-blocking and close-on-exec; with acceptFds false,
 * one that refuses fds; with passPidfd, one that gets each sender's pidfd.
 */
export function openSocket(type: number, acceptFds = true, passPidfd = false): number {
  const fd = native.socket(type);
  if (fd < 0) throw systemError(fd, 'socket');
  try {
    if (!acceptFds) refuseFds(fd);
    if (passPidfd) passPidfds(fd);
  } catch (err) {
    native.close(fd);
    throw err;
  }
  return fd;
}

/** A connected pair (socketpair(2)). */
export function socketPair(type: number): [number, number] {
  const r = native.socketpair(type, pairBuf);
  if (r < 0) throw systemError(r, 'socketpair');
  return [pairBuf[0]!, pairBuf[1]!];
}

/**
 * What stops a connect's retries: an AbortSignal (the wait ends at once), or
 * any object whose `aborted` turns true (seen after the current wait, at most
 * 50 ms), for callers that must not rely on a global AbortController (a
 * sandbox may lack one).
 */
export interface Cancel {
  readonly aborted: boolean;
  readonly reason?: unknown;
}

/**
 * A socket connected to `address`. A non-blocking AF_UNIX connect fails
 * with EAGAIN while the listener's backlog is full and never completes
 * later on its own: retry, backing off up to 50 ms, until `signal` aborts.
 */
export async function connectSocket(
  address: ResolvedAddress,
  type: number,
  signal: AbortSignal | Cancel | undefined,
  acceptFds = true,
  passPidfd = false,
): Promise<number> {
  if (signal?.aborted) throw abortError(signal);
  const fd = openSocket(type, acceptFds, passPidfd);
  const wakes = signal !== undefined && 'addEventListener' in signal ? { signal } : undefined;
  let delay = 1;
  for (;;) {
    const r = native.connect(fd, address.bytes);
    if (r === 0) return fd;
    if (r !== native.EAGAIN) {
      native.close(fd);
      throw systemError(r, 'connect', address.display);
    }
    try {
      await sleep(delay, undefined, wakes);
    } catch (err) {
      native.close(fd);
      throw signal ? abortError(signal) : err;
    }
    if (signal?.aborted) {
      native.close(fd);
      throw abortError(signal);
    }
    delay = Math.min(delay * 2, 50);
  }
}

/** A socket bound to `address` (the receiving side of datagram protocols). */
export function bindSocket(address: ResolvedAddress, type: number, acceptFds = true, passPidfd = false): number {
  const fd = openSocket(type, acceptFds, passPidfd);
  const r = native.bind(fd, address.bytes);
  if (r < 0) {
    native.close(fd);
    throw systemError(r, 'bind', address.display);
  }
  return fd;
}

/** The identity of a socket file: close() unlinks the file only if it is still this one. */
export interface FileId {
  dev: number;
  ino: number;
}

/**
 * A listening socket on `address`. A path's file gets `mode` before
 * listen(2), so nobody can connect in between. A stale socket file (nobody
 * listening) is replaced; a live one gives EADDRINUSE.
 */
export function listenSocket(
  address: ResolvedAddress,
  type: number,
  backlog: number,
  mode: number,
  acceptFds = true,
  passPidfd = false,
): { fd: number; file: FileId | null } {
  // SO_PASSRIGHTS and SO_PASSPIDFD before listen(2): every connection inherits them.
  const fd = openSocket(type, acceptFds, passPidfd);
  let file: FileId | null = null;
  try {
    let r = native.bind(fd, address.bytes);
    if (r === -EADDRINUSE && address.path !== undefined && isStale(address.bytes, address.path, type)) {
      unlinkSync(address.path);
      r = native.bind(fd, address.bytes);
    }
    if (r < 0) throw systemError(r, 'bind', address.display);
    if (address.path !== undefined) {
      chmodSync(address.path, mode);
      const st = statSync(address.path);
      file = { dev: st.dev, ino: st.ino };
    }
    r = native.listen(fd, backlog);
    if (r < 0) throw systemError(r, 'listen', address.display);
  } catch (err) {
    native.close(fd);
    if (file && address.path !== undefined) unlinkIfSame(address.path, file);
    throw err;
  }
  return { fd, file };
}

/** Unlink `path` if it is still the file `file` (nobody replaced it). */
export function unlinkIfSame(path: string, file: FileId): void {
  try {
    const st = lstatSync(path);
    if (st.dev === file.dev && st.ino === file.ino) unlinkSync(path);
  } catch {
    // gone already
  }
}

/**
 * A socket file is stale when it is a socket and connecting to it is
 * refused: its listener is gone. A live one, or a file that is not a
 * socket, is never touched.
 */
function isStale(bytes: Uint8Array, path: string, type: number): boolean {
  try {
    if (!lstatSync(path).isSocket()) return false;
  } catch {
    return false;
  }
  const probe = native.socket(type);
  if (probe < 0) return false;
  const r = native.connect(probe, bytes);
  native.close(probe);
  return r === -ECONNREFUSED;
}

/** What adoptSocket accepts. */
export interface AdoptRules {
  /** A listening socket (FdServer), or a connected one. */
  listening: boolean;
  /** Only this type (SOCK_STREAM for FdStream), any by default. */
  type?: number;
  /** How to say what was wrong, for the error message. */
  hint?: string;
}

/**
 * Check that `fd` is an AF_UNIX socket the caller can use, and make it
 * non-blocking and close-on-exec. Returns its type. The fd stays the
 * caller's (not closed on error).
 */
export function adoptSocket(fd: unknown, rules: AdoptRules): number {
  const n = checkFdNumber(fd);
  const info = socketInfo(n);
  if (info.domain !== native.AF_UNIX) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${n} is not an AF_UNIX socket`);
  if (rules.type !== undefined && info.type !== rules.type) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${n} is not a stream socket`);
  if (info.listening !== rules.listening) {
    const what = rules.listening ? 'is not a listening socket' : `is a listening socket${rules.hint ? `: ${rules.hint}` : ''}`;
    throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${n} ${what}`);
  }
  const r = native.setFlags(n, 1, 1);
  if (r < 0) throw systemError(r, 'fcntl');
  return info.type;
}
