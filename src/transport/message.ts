// What an FdSocket sends and receives (the message types, the options of
// its constructors) and the checks of its arguments, made before anything
// is sent: data, limits, runc names.
import { constants } from 'node:os';
import { addressOptions, encodeAddress, socketTypeNumber, type AddressOptions, type ResolvedAddress } from '../base/address.js';
import { ErrorCodes, FdPassError, checkSignal, invalidArgType, outOfRange } from '../base/errors.js';
import { MAX_NAME_LEN } from '../io/recv.js';
import { checkAcceptFds, checkPassPidfd } from '../io/sockops.js';
import type { Pidfd } from './pidfd.js';

const { EPIPE } = constants.errno;

/** A received message: its bytes and the fds that came with them (yours to close). */
export interface ReceivedMessage {
  data: Buffer;
  fds: number[];
  /**
   * On a socket made with `passPidfd: true` only: the sender's process as a
   * Pidfd (SCM_PIDFD), yours to close like the fds (`using`, or close()). It
   * names the thread-group leader of the process that sent the message,
   * safe from pid reuse; its `pid` is -1 when that process had exited by the
   * time the message was read (Linux >= 6.17 still names a sender that was
   * reaped; `exited()` gives its status). null when the kernel wrote an
   * error in place of the fd (the receiver at RLIMIT_NOFILE; a reaped sender
   * before 6.17), or when adopting it failed (no fd free to read its
   * /proc/self/fdinfo; it was closed). A message nobody receives has its
   * pidfd closed with it, as its fds.
   */
  pidfd?: Pidfd | null;
}

/** A runc-style message: a name and one fd (yours to close). */
export interface ReceivedFd {
  name: string;
  fd: number;
}

export interface RecvOptions {
  signal?: AbortSignal;
  /** Largest message accepted, in bytes (default 65536, at most 16 MiB). */
  maxBytes?: number;
  /** Most fds accepted in one message (default and at most 253). */
  maxFds?: number;
}

export interface RecvFdOptions {
  signal?: AbortSignal;
}

/** Options of FdSocket.bindDatagram. */
export interface BindOptions extends AddressOptions {
  /** false: the kernel refuses fds sent to this socket (SO_PASSRIGHTS off; Linux >= 6.16). Default true. */
  acceptFds?: boolean;
  /**
   * true: every message received carries its sender's pidfd as
   * `message.pidfd` (SO_PASSPIDFD; Linux >= 6.5, else
   * ERR_FDPASS_UNSUPPORTED_KERNEL). 'dgram' and 'seqpacket' only. Default false.
   */
  passPidfd?: boolean;
}

export interface ConnectOptions extends AddressOptions {
  signal?: AbortSignal;
  /** false: the kernel refuses fds the peer sends to this socket (SO_PASSRIGHTS off; Linux >= 6.16). Default true. */
  acceptFds?: boolean;
  /**
   * true: every message received carries its sender's pidfd as
   * `message.pidfd` (SO_PASSPIDFD; Linux >= 6.5, else
   * ERR_FDPASS_UNSUPPORTED_KERNEL). 'dgram' and 'seqpacket' only. Default false.
   */
  passPidfd?: boolean;
}

export interface FdSocketEvents {
  message: [message: ReceivedMessage];
  error: [error: Error];
  end: [];
  close: [];
}

export function checkData(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  // Any realm's Buffer, TypedArray or DataView (a vm context's, a test sandbox's).
  if (ArrayBuffer.isView(data)) return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgType('data', 'of type string or an instance of Buffer or Uint8Array', data);
}

export function checkLimit(value: unknown, name: string, def: number, max: number, min: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, value);
  return value;
}

export function checkOptions(options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  return options as Record<string, unknown>;
}

// The last name encoded: senders of many fds mostly repeat one name. The
// bytes are never handed out nor written to, so sharing them is safe.
let lastName = '';
let lastNameBytes: Buffer = Buffer.alloc(0);
/** Encode a runc name, refusing MAX_NAME_LEN bytes or more before anything is sent. */
export function encodeName(name: unknown): Buffer {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name);
  if (name === lastName) return lastNameBytes;
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length >= MAX_NAME_LEN) {
    throw outOfRange('name', `shorter than ${MAX_NAME_LEN} bytes (runc's MaxNameLen)`, `${bytes.length} bytes`, ErrorCodes.NAME_TOO_LONG);
  }
  lastName = name;
  lastNameBytes = bytes;
  return bytes;
}

export function emptyDataError(): RangeError {
  const err = new RangeError('a stream socket needs at least one byte of data to carry fds') as RangeError & { code: string };
  err.code = ErrorCodes.EMPTY_DATA;
  return err;
}

export function sendAfterEnd(): FdPassError {
  return new FdPassError('EPIPE', 'send after end()', { errno: -EPIPE, syscall: 'sendmsg' });
}

// A caller waiting for a message. `keep`: its fds stay in the library's care
// (a protocol module's Kept value), else they are handed over.
export type Waiter = { maxBytes: number; maxFds: number; keep: boolean; reject: (e: Error) => void } & (
  | { kind: 'recv'; resolve: (m: ReceivedMessage | null) => void }
  | { kind: 'fd'; resolve: (m: ReceivedFd) => void }
  | { kind: 'iter'; resolve: (r: IteratorResult<ReceivedMessage>) => void }
);

export interface SocketArgs {
  address: ResolvedAddress;
  type: number;
  signal: AbortSignal | undefined;
  acceptFds: boolean;
  passPidfd: boolean;
}

/** FdSocket.connect's and bindDatagram's argument, checked (TypeError, RangeError) before anything opens. */
export function socketArgs(arg: string | ConnectOptions | BindOptions, kind: 'connect' | 'bind'): SocketArgs {
  const options = addressOptions<ConnectOptions & BindOptions>(arg, 'path');
  const address = encodeAddress(options);
  const type = socketTypeNumber(options.type ?? (kind === 'bind' ? 'dgram' : undefined));
  const signal = kind === 'connect' ? checkSignal(options.signal) : undefined;
  const acceptFds = checkAcceptFds(options.acceptFds);
  return { address, type, signal, acceptFds, passPidfd: checkPassPidfd(options.passPidfd, type) };
}
