import { constants } from 'node:os';
import { getSystemErrorMap, getSystemErrorName } from 'node:util';

let names: Map<number, string> | undefined;
function errnoNames(): Map<number, string> {
  if (!names) {
    // Linux errnos that neither libuv nor os.constants name.
    names = new Map([[109, 'ETOOMANYREFS']]);
    for (const [name, value] of Object.entries(constants.errno)) if (!names.has(value)) names.set(value, name);
  }
  return names;
}

/**
 * Codes of the errors fdpass raises itself. System errors carry the errno's
 * name instead (`EPIPE`, `ECONNREFUSED`, ...), with `errno` and `syscall`.
 */
export const ErrorCodes = {
  /** A name of MAX_NAME_LEN (4096) bytes or more, sent or received. */
  NAME_TOO_LONG: 'ERR_FDPASS_NAME_TOO_LONG',
  /** recvFd: the message carried no fd. */
  NO_FD: 'ERR_FDPASS_NO_FD',
  /** recvFd: the message carried more than one fd (all were closed). */
  TOO_MANY_FDS: 'ERR_FDPASS_TOO_MANY_FDS',
  /** recvFd: more than one control message (SCM_RIGHTS, SCM_CREDENTIALS...). */
  UNEXPECTED_CONTROL: 'ERR_FDPASS_UNEXPECTED_CONTROL',
  /** The message's fds did not fit (MSG_CTRUNC or more than maxFds); those that arrived were closed. */
  CONTROL_TRUNCATED: 'ERR_FDPASS_CONTROL_TRUNCATED',
  /** The message's data did not fit (MSG_TRUNC on a datagram socket); its fds were closed. */
  TRUNCATED: 'ERR_FDPASS_TRUNCATED',
  /** recvFd reached the end of the stream before a message. */
  EOF: 'ERR_FDPASS_EOF',
  /** The socket or server was closed (before or during the operation). */
  CLOSED: 'ERR_FDPASS_CLOSED',
  /** A stream socket needs at least one byte of data to carry fds. */
  EMPTY_DATA: 'ERR_FDPASS_EMPTY_DATA',
  /** A *Sync call on a socket with asynchronous sends still queued. */
  BUSY: 'ERR_FDPASS_BUSY',
  /** The socket is of the wrong kind for this call (not AF_UNIX, a listener...). */
  BAD_SOCKET: 'ERR_FDPASS_BAD_SOCKET',
  /** The fd is not of the kind the call needs (not a pidfd, not a seccomp notify fd); it was left open, with the caller. */
  BAD_FD: 'ERR_FDPASS_BAD_FD',
  /** fdpass/shm: the file is not sealed against shrinking (F_SEAL_SHRINK), so a peer could truncate it under the mapping and kill this process with SIGBUS; refused, the fd left with the caller (`allowUnsealed: true` accepts it). */
  UNSEALED: 'ERR_FDPASS_UNSEALED',
  /** A path or abstract name longer than sun_path allows (107 bytes); thrown as a RangeError before any syscall. */
  PATH_TOO_LONG: 'ERR_FDPASS_PATH_TOO_LONG',
  /** A protocol message that does not follow its format (bad JSON, an invalid state, an unknown kind). */
  BAD_MESSAGE: 'ERR_FDPASS_BAD_MESSAGE',
  /** A message carried a different number of fds than it names. */
  FD_COUNT_MISMATCH: 'ERR_FDPASS_FD_COUNT_MISMATCH',
  /** A protocol message longer than its size bound. */
  MESSAGE_TOO_LARGE: 'ERR_FDPASS_MESSAGE_TOO_LARGE',
  /** The peer did not complete its message in time. */
  TIMEOUT: 'ERR_FDPASS_TIMEOUT',
  /** Malformed environment variables: the service manager's (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET) or FDPASS_BACKEND. */
  BAD_ENV: 'ERR_FDPASS_BAD_ENV',
  /** Handoff: the running process refused us, or closed the control connection without an offer. */
  HANDOFF_REFUSED: 'ERR_FDPASS_HANDOFF_REFUSED',
  /** Handoff: the running process is already handing off to another process. */
  HANDOFF_BUSY: 'ERR_FDPASS_HANDOFF_BUSY',
  /** Handoff: the other side gave up (timeout, abort, or it went away) before the handoff completed. */
  HANDOFF_ABORTED: 'ERR_FDPASS_HANDOFF_ABORTED',
  /** Handoff: a message on the control socket that does not follow the protocol. */
  PROTOCOL: 'ERR_FDPASS_PROTOCOL',
  /** This runtime lacks what fdpass needs: at import, not Linux, Bun < 1.4, Deno < 2.9, Node-API < 8, or FDPASS_BACKEND=uv without a libuv loop; on Deno, the helpers that hand an fd to node:net or node:fs; on Bun, cluster serve(). */
  UNSUPPORTED_RUNTIME: 'ERR_FDPASS_UNSUPPORTED_RUNTIME',
  /** A sendmsg with fds to a socket that refuses them (its receiver turned SO_PASSRIGHTS off: `acceptFds: false`); nothing was sent. errno EPERM. */
  FDS_REFUSED: 'ERR_FDPASS_FDS_REFUSED',
  /** The kernel lacks a feature asked for: `acceptFds: false` needs SO_PASSRIGHTS (Linux >= 6.16), `passPidfd: true` SO_PASSPIDFD (Linux >= 6.5). errno and syscall say what failed. */
  UNSUPPORTED_KERNEL: 'ERR_FDPASS_UNSUPPORTED_KERNEL',
  /** No native addon loads here: no prebuild fits this platform and none was built from source (`npm rebuild fdpass`). */
  NO_ADDON: 'ERR_FDPASS_NO_ADDON',
  /** Supervisor: the command to run is not an executable file (not found on PATH, or not executable). */
  NO_COMMAND: 'ERR_FDPASS_NO_COMMAND',
  /** Supervisor: a reload failed (the new process exited, or was not ready in time); the old process still serves. */
  RELOAD_FAILED: 'ERR_FDPASS_RELOAD_FAILED',
  /** An unexpected failure inside fdpass that carried no code of its own (a bug: please report it). */
  INTERNAL: 'ERR_FDPASS_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface FdPassErrorOptions {
  errno?: number;
  syscall?: string;
  path?: string;
  cause?: unknown;
}

/** An error raised by fdpass: `code` is an errno name or an `ERR_FDPASS_*` code. */
export class FdPassError extends Error {
  readonly code: string;
  /** Negative errno, as in Node's system errors, when a syscall failed. */
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;

  constructor(code: string, message: string, options: FdPassErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FdPassError';
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.path !== undefined) this.path = options.path;
  }
}

/** A Node-style system error from a negative errno returned by the addon. */
export function systemError(errno: number, syscall: string, path?: string): FdPassError {
  let code: string;
  try {
    code = getSystemErrorName(errno);
  } catch {
    code = 'Unknown';
  }
  // libuv names only the errnos it knows (not ETOOMANYREFS, for one).
  if (code.startsWith('Unknown')) code = errnoNames().get(-errno) ?? `E${-errno}`;
  const desc = getSystemErrorMap().get(errno)?.[1];
  const where = path === undefined ? '' : ` ${path}`;
  return new FdPassError(code, `${syscall} ${code}${where}${desc ? ` (${desc})` : ''}`, {
    errno,
    syscall,
    ...(path === undefined ? {} : { path }),
  });
}

export function closedError(what = 'socket'): FdPassError {
  return new FdPassError(ErrorCodes.CLOSED, `the ${what} is closed`);
}

/** An optional AbortSignal argument: undefined, or a TypeError for anything else. */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  // By its shape, not instanceof: a signal made in another realm (a vm
  // context, a test sandbox) is one too, and a sandbox may have no global
  // AbortSignal to compare with.
  if (signal !== undefined && !isAbortSignal(signal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal);
  return signal;
}

function isAbortSignal(value: unknown): value is AbortSignal {
  if (value === null || typeof value !== 'object') return false;
  const s = value as Partial<AbortSignal>;
  return typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function' && typeof s.removeEventListener === 'function';
}

/** Node's AbortError shape: name 'AbortError', code 'ABORT_ERR'. */
export function abortError(signal: { readonly reason?: unknown }): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  return err;
}

type Coded<E extends Error> = E & { code: string };

export function invalidArgType(name: string, expected: string, actual: unknown): Coded<TypeError> {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`) as Coded<TypeError>;
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

export function invalidArgValue(name: string, reason: string, actual: unknown): Coded<TypeError> {
  const err = new TypeError(`The argument "${name}" ${reason}. Received ${describe(actual)}`) as Coded<TypeError>;
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** `received` replaces the description of `actual` when a measure says more (a length in bytes). */
export function outOfRange(name: string, range: string, actual: unknown, code = 'ERR_OUT_OF_RANGE', received?: string): Coded<RangeError> {
  const err = new RangeError(
    `The value of "${name}" is out of range. It must be ${range}. Received ${received ?? describe(actual)}`,
  ) as Coded<RangeError>;
  err.code = code;
  return err;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `type string (${JSON.stringify(v.length > 28 ? `${v.slice(0, 25)}...` : v)})`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `type ${typeof v} (${String(v)})`;
  if (typeof v === 'function') return 'function';
  const ctor = (v as { constructor?: { name?: string } }).constructor?.name;
  return ctor ? `an instance of ${ctor}` : typeof v;
}

/**
 * The error of a failed sendmsg: EPERM with fds attached means the receiver
 * refuses fds (SO_PASSRIGHTS off), and says so.
 */
export function sendError(errno: number, withFds: boolean): FdPassError {
  if (errno === -constants.errno.EPERM && withFds) {
    return new FdPassError(
      ErrorCodes.FDS_REFUSED,
      'sendmsg EPERM: the receiving socket refuses fds (SO_PASSRIGHTS off: acceptFds: false)',
      {
        errno,
        syscall: 'sendmsg',
      },
    );
  }
  return systemError(errno, 'sendmsg');
}
