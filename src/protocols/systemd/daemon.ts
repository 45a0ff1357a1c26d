// sd-daemon's calls, the service's side of the service manager's protocol:
// - listenFds(): socket activation, as sd_listen_fds(3) / sd_listen_fds_with_names.
// - notify(), storeFds(), removeStoredFds(), notifyBarrier(): $NOTIFY_SOCKET,
//   as sd_notify(3) / sd_pid_notify_with_fds / sd_notify_barrier.
// Policy only: the sockets are the core's FdSocket; the one syscall needed
// beyond it (fcntl FD_CLOEXEC on inherited fds) is the core addon's setFlags.
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import {
  FdSocket,
  ErrorCodes,
  FdPassError,
  checkSignal,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
  FdLike,
  MAX_FDS,
  closeFds,
  toFdArray,
  native,
} from '../internal.js';

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** The longest notification systemd reads (NOTIFY_BUFFER_MAX = PIPE_BUF); longer ones it drops. */
export const NOTIFY_MAX_BYTES = 4096;

/** A socket passed by the service manager: its fd (yours now) and its name. */
export interface ListenFd {
  fd: number;
  /** From LISTEN_FDNAMES (FileDescriptorName=), or 'unknown'. */
  name: string;
}

export interface ListenFdsOptions {
  /**
   * Remove LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from process.env, so
   * that children do not see them and a second call does not hand out the
   * same fds again. Default true (each fd has one owner).
   */
  unsetEnvironment?: boolean;
}

export interface NotifyOptions {
  /** Remove NOTIFY_SOCKET from process.env after this call. Default false. */
  unsetEnvironment?: boolean;
}

export interface BarrierOptions extends NotifyOptions {
  /** How long to wait for the manager, in milliseconds (default 5000). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface StoreFdsOptions extends NotifyOptions {
  /** false sends FDPOLL=0: the manager does not watch the fds for errors/hangups. */
  poll?: boolean;
}

/** The notification state: raw `KEY=VALUE` lines, or an object of them. */
export type NotifyState = string | Record<string, string | number>;

function badEnv(message: string): FdPassError {
  return new FdPassError(ErrorCodes.BAD_ENV, message);
}

function parseCount(name: string, value: string, max: number): number {
  if (!/^[0-9]+$/.test(value)) throw badEnv(`${name}=${JSON.stringify(value)} is not a decimal number`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n > max) throw badEnv(`${name}=${value} is out of range (at most ${max})`);
  return n;
}

function unsetListenEnv(): void {
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_FDNAMES;
}

/**
 * The sockets the service manager passed to this process (sd_listen_fds(3)),
 * in order, starting at fd 3. Returns [] when LISTEN_PID or LISTEN_FDS is not
 * set, or LISTEN_PID names another process (the variables were inherited,
 * they are not for us). The fds become close-on-exec and are yours.
 *
 * Malformed variables throw ERR_FDPASS_BAD_ENV (never a wrong fd): a
 * LISTEN_PID or LISTEN_FDS that is not a number, a LISTEN_FDNAMES whose count
 * differs from LISTEN_FDS, or an fd in the range that is not open.
 */
export function listenFds(options: ListenFdsOptions = {}): ListenFd[] {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const unset = options.unsetEnvironment ?? true;
  if (typeof unset !== 'boolean') throw invalidArgType('options.unsetEnvironment', 'of type boolean', unset);
  try {
    const pidText = process.env.LISTEN_PID;
    const fdsText = process.env.LISTEN_FDS;
    if (pidText === undefined || fdsText === undefined) return [];
    const pid = parseCount('LISTEN_PID', pidText, 2 ** 31 - 1);
    if (pid === 0) throw badEnv('LISTEN_PID=0 is not a process id');
    if (pid !== process.pid) return [];
    const count = parseCount('LISTEN_FDS', fdsText, 2 ** 31 - 1 - LISTEN_FDS_START);
    const namesText = process.env.LISTEN_FDNAMES;
    let names: string[];
    if (namesText === undefined) names = new Array<string>(count).fill('unknown');
    else {
      names = namesText === '' ? [] : namesText.split(':');
      if (names.length !== count) {
        throw badEnv(`LISTEN_FDNAMES has ${names.length} name(s) (${JSON.stringify(namesText)}) but LISTEN_FDS=${count}`);
      }
    }
    // Check every fd first, so that an error hands out nothing.
    for (let i = 0; i < count; i++) {
      const fd = LISTEN_FDS_START + i;
      const r = native.setFlags(fd, 1, -1);
      if (r < 0) {
        const err = systemError(r, 'fcntl');
        throw new FdPassError(ErrorCodes.BAD_ENV, `LISTEN_FDS=${count} but fd ${fd} is not usable: ${err.message}`, { cause: err });
      }
    }
    return names.map((name, i) => ({ fd: LISTEN_FDS_START + i, name }));
  } finally {
    if (unset) unsetListenEnv();
  }
}

/** $NOTIFY_SOCKET as an FdSocket.connect address; null when not set. */
function notifyAddress(): { path: string } | { abstract: string } | null {
  const e = process.env.NOTIFY_SOCKET;
  if (e === undefined || e === '') return null;
  if (e.startsWith('/')) return { path: e };
  if (e.startsWith('@') && e.length > 1) return { abstract: e.slice(1) };
  throw badEnv(`NOTIFY_SOCKET=${JSON.stringify(e)} is neither an absolute path nor an @abstract name`);
}

/** Turn a state into the datagram's text: `KEY=VALUE` lines. */
export function formatState(state: unknown): string {
  let text: string;
  if (typeof state === 'string') text = state;
  else if (state !== null && typeof state === 'object' && !Array.isArray(state)) {
    const lines: string[] = [];
    for (const [key, value] of Object.entries(state as Record<string, unknown>)) {
      if (!/^[A-Za-z0-9_]+$/.test(key)) throw invalidArgValue(`state.${key}`, 'must be a name of letters, digits and _', key);
      if (typeof value !== 'string' && typeof value !== 'number') {
        throw invalidArgType(`state.${key}`, 'of type string or number', value);
      }
      const v = String(value);
      if (v.includes('\n')) throw invalidArgValue(`state.${key}`, 'must not contain a newline', v);
      lines.push(`${key}=${v}`);
    }
    text = lines.join('\n');
  } else throw invalidArgType('state', 'of type string or object', state);
  if (text.length === 0) throw invalidArgValue('state', 'must not be empty', text);
  return text;
}

/**
 * Send one notification to the service manager (sd_notify(3)): `state` as
 * newline-separated `KEY=VALUE` lines, and `fds` (0 to 253) in one
 * SCM_RIGHTS, in one datagram to $NOTIFY_SOCKET (a path, or `@name` for an
 * abstract address). Resolves true once the manager's socket has it, false
 * when NOTIFY_SOCKET is not set. The fds stay yours (the manager gets copies).
 */
export async function notify(state: NotifyState, fds?: readonly FdLike[], options: NotifyOptions = {}): Promise<boolean> {
  const text = formatState(state);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > NOTIFY_MAX_BYTES) {
    throw outOfRange('state', `at most ${NOTIFY_MAX_BYTES} bytes (the manager drops longer messages)`, `${bytes.length} bytes`);
  }
  toFdArray(fds); // check before anything happens
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  let address: ReturnType<typeof notifyAddress>;
  try {
    address = notifyAddress();
  } finally {
    if (options.unsetEnvironment) delete process.env.NOTIFY_SOCKET;
  }
  if (!address) return false;
  const sock = await FdSocket.connect({ ...address, type: 'dgram' });
  try {
    await sock.send(bytes, fds);
  } finally {
    await sock.close();
  }
  return true;
}

/**
 * sd_notify's FDNAME rules, so that systemd stores fds under this name (it
 * stores a name it refuses as "stored"): 1 to 255 printable ASCII
 * characters, no ':'.
 */
export function checkFdName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string') throw invalidArgType(what, 'of type string', name);
  if (!/^[\x21-\x39\x3b-\x7e]{1,255}$/.test(name)) {
    throw invalidArgValue(what, 'must be 1 to 255 printable ASCII characters without spaces or ":"', name);
  }
  return name;
}

/**
 * Keep fds in the service manager's fd store (FDSTORE=1, FDNAME=name): after
 * a restart of the service they come back through listenFds() under `name`.
 * Needs FileDescriptorStoreMax= in the unit. Resolves false without NOTIFY_SOCKET.
 */
export function storeFds(name: string, fds: readonly FdLike[], options: StoreFdsOptions = {}): Promise<boolean> {
  checkFdName(name);
  if (!Array.isArray(fds) || fds.length === 0) throw invalidArgValue('fds', 'must be a non-empty array of fds', fds);
  if (fds.length > MAX_FDS) throw outOfRange('fds.length', `<= ${MAX_FDS}`, fds.length);
  const state: Record<string, string | number> = { FDSTORE: 1, FDNAME: name };
  if (options.poll === false) state.FDPOLL = 0;
  return notify(state, fds, options);
}

/** Remove the fds stored under `name` (FDSTOREREMOVE=1). Resolves false without NOTIFY_SOCKET. */
export function removeStoredFds(name: string, options: NotifyOptions = {}): Promise<boolean> {
  checkFdName(name);
  return notify({ FDSTOREREMOVE: 1, FDNAME: name }, undefined, options);
}

/**
 * Wait until the service manager has processed every notification sent
 * before (sd_notify_barrier): send `BARRIER=1` with one fd and wait until the
 * manager closes its copy. The fd is one end of a socketpair rather than of a
 * pipe (Node has no pipe(2)); the manager only closes it, whatever it is.
 * Resolves true when done, false without NOTIFY_SOCKET; rejects with
 * ETIMEDOUT after `timeout` ms (default 5000).
 */
export async function notifyBarrier(options: BarrierOptions = {}): Promise<boolean> {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const timeout = options.timeout ?? 5000;
  if (typeof timeout !== 'number') throw invalidArgType('options.timeout', 'of type number', timeout);
  if (!Number.isInteger(timeout) || timeout < 0) throw outOfRange('options.timeout', 'an integer >= 0', timeout);
  const signal = checkSignal(options.signal);
  signal?.throwIfAborted();
  if (notifyAddress() === null) {
    if (options.unsetEnvironment) delete process.env.NOTIFY_SOCKET;
    return false;
  }
  const [mine, theirs] = FdSocket.pair('stream');
  const timer = AbortSignal.timeout(timeout);
  const wait = signal ? AbortSignal.any([signal, timer]) : timer;
  try {
    await notify('BARRIER=1', [theirs.fd], options);
    await theirs.close(); // now only the manager holds that end
    for (;;) {
      // End of file once the manager closed its copy. Like sd_notify_barrier
      // (whose fd is a pipe), anything written into it is ignored; fds too.
      let m;
      try {
        m = await mine.recv({ signal: wait });
      } catch (err) {
        if (timer.aborted && !signal?.aborted) {
          throw new FdPassError('ETIMEDOUT', `notifyBarrier: the service manager did not answer within ${timeout} ms`, {
            errno: -constants.errno.ETIMEDOUT,
            cause: err,
          });
        }
        throw err;
      }
      if (m === null) return true;
      closeFds(m.fds);
    }
  } finally {
    await theirs.close();
    await mine.close();
  }
}

// Watchdog's constructor is private (users get one from watchdog()); its
// static block hands it to this module.
let createWatchdog: (usec: number) => Watchdog;

/** Options of {@link watchdog}. */
export interface WatchdogOptions {
  /**
   * Remove WATCHDOG_USEC and WATCHDOG_PID from process.env, so that children
   * do not take the watchdog for theirs. Default false (as sd_watchdog_enabled(0)).
   */
  unsetEnvironment?: boolean;
}

/** The events of a {@link Watchdog}. */
export interface WatchdogEvents {
  /** A ping that could not be sent (only emitted while someone listens; else dropped). */
  error: [error: Error];
}

/**
 * The service manager's watchdog, kept fed: `WATCHDOG=1` at half of
 * WATCHDOG_USEC, on an unref'd timer (it never keeps the process alive).
 * `active` is false, and nothing is sent, where the manager asked for no
 * watchdog (WATCHDOG_USEC unset or 0, WATCHDOG_PID naming another process,
 * no NOTIFY_SOCKET).
 */
export class Watchdog extends EventEmitter<WatchdogEvents> implements Disposable {
  /** Milliseconds between pings (half of WATCHDOG_USEC); 0 when inactive. */
  readonly interval: number;
  /** The timeout the manager enforces (WATCHDOG_USEC), in microseconds; 0 when inactive. */
  readonly usec: number;
  #timer: NodeJS.Timeout | null = null;

  static {
    createWatchdog = (usec) => new Watchdog(usec);
  }

  private constructor(usec: number) {
    super();
    this.usec = usec;
    this.interval = usec === 0 ? 0 : Math.max(1, Math.floor(usec / 2000));
    if (usec === 0) return;
    this.#timer = setInterval(() => this.#tick(), this.interval);
    this.#timer.unref();
    this.#tick();
  }

  /** True while pinging. */
  get active(): boolean {
    return this.#timer !== null;
  }

  /** Send `WATCHDOG=1` now; resolves true once sent, false when inactive. */
  async ping(): Promise<boolean> {
    if (!this.#timer) return false;
    return notify('WATCHDOG=1');
  }

  #tick(): void {
    this.ping().catch((err: unknown) => {
      if (this.listenerCount('error') > 0) this.emit('error', err as Error);
    });
  }

  /** Stop pinging (the manager's timer then runs out unless the service stops too). Idempotent. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Feed the service manager's watchdog (sd_watchdog_enabled(3) and
 * `WATCHDOG=1`): with WatchdogSec= in the unit, systemd sets WATCHDOG_USEC
 * (and WATCHDOG_PID) and restarts or kills the service when no `WATCHDOG=1`
 * arrives within that time. The returned Watchdog pings at half of it until
 * closed (also `using wd = watchdog()`); it is inactive, sending nothing,
 * when WATCHDOG_USEC is unset or 0, WATCHDOG_PID names another process, or
 * NOTIFY_SOCKET is unset. Malformed variables throw ERR_FDPASS_BAD_ENV.
 */
export function watchdog(options: WatchdogOptions = {}): Watchdog {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const unset = options.unsetEnvironment ?? false;
  if (typeof unset !== 'boolean') throw invalidArgType('options.unsetEnvironment', 'of type boolean', unset);
  let usec = 0;
  try {
    const usecText = process.env.WATCHDOG_USEC;
    const pidText = process.env.WATCHDOG_PID;
    if (usecText !== undefined) {
      usec = parseCount('WATCHDOG_USEC', usecText, Number.MAX_SAFE_INTEGER);
      // Beyond what a timer can wait (about 24.8 days): out of range, as for a pid.
      if (usec / 2000 > 2 ** 31 - 1) throw badEnv(`WATCHDOG_USEC=${usecText} is out of range (a ping interval over 2^31 ms)`);
      if (pidText !== undefined) {
        const pid = parseCount('WATCHDOG_PID', pidText, 2 ** 31 - 1);
        if (pid === 0) throw badEnv('WATCHDOG_PID=0 is not a process id');
        if (pid !== process.pid) usec = 0; // inherited: not for us
      }
      if (notifyAddress() === null) usec = 0;
    }
  } finally {
    if (unset) {
      delete process.env.WATCHDOG_USEC;
      delete process.env.WATCHDOG_PID;
    }
  }
  return createWatchdog(usec);
}
