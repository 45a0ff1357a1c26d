// Reading from the kernel in batches, and the wire rules that turn what
// arrived into a message, a runc (name, fd) pair, a stream chunk, or a coded
// error: stated here once, for the full paths and the fast paths alike
// (isPlainMessage, isRuncFd). Whatever the outcome, every fd that arrived
// ends up either handed to the caller or closed.
import { ErrorCodes, FdPassError, systemError } from '../base/errors.js';
import { MAX_FDS } from '../base/fds.js';
import { discardFds, disown } from './owned.js';
import { DRAINED, MORE } from './pump.js';
import { waitWhileAgain } from './blocking.js';
import { native } from '../base/native.js';

/** runc's MaxNameLen: names of this many bytes or more are refused. */
export const MAX_NAME_LEN = 4096;
export const DEFAULT_MAX_BYTES = 65536;
export { MAX_FDS };
/** Messages read per crossing into C, at most (the addon's recvmmsg batch). */
export const BATCH: number = native.BATCH;

// The addon's layout of a batch's meta array: META_INTS ints per message.
const { FD_ROOM, META_INTS, META_BYTES, META_FDS, META_FLAGS, META_CONTROL, META_PID, META_PIDFD, BATCH_DRAINED } = native;
/** RawMessage.pidfd when the message brought no pidfd. */
export const NO_PIDFD: number = native.NO_PIDFD;
// A data slot of the default size per message of a batch (recvmmsg fills each
// slot; pages never written cost no memory), and the fd room of each.
const scratchData = Buffer.allocUnsafeSlow(BATCH * DEFAULT_MAX_BYTES);
const scratchFds = new Int32Array(BATCH * FD_ROOM);
const scratchMeta = new Int32Array(BATCH * META_INTS + 1);
let scratchBig: Buffer | null = null;

export const FLAG_TRUNC = native.MSG_TRUNC;
export const FLAG_CTRUNC = native.MSG_CTRUNC;
export const FLAG_EOF = native.FDP_EOF;

/** A message as read from the kernel, before the rules are applied. */
export interface RawMessage {
  data: Buffer;
  fds: number[];
  /** MSG_TRUNC, MSG_CTRUNC, FLAG_EOF */
  flags: number;
  /** count of SCM_RIGHTS | count of other control messages << 8 (SCM_PIDFD not counted) */
  control: number;
  /**
   * The sender's pidfd (SCM_PIDFD, on a socket with SO_PASSPIDFD that asked
   * to keep it): an fd >= 0, in the library's care like `fds`; else none
   * (NO_PIDFD, or the negative errno the kernel wrote in its place).
   */
  pidfd: number;
}

export type RawEntry = RawMessage | FdPassError;

/**
 * Message i of the last read: its bytes at `off` in data, its fds at `fdOff`
 * in the scratch fds (a plain loop: Array.from iterates, 4x slower).
 */
function messageAt(data: Buffer, i: number, off: number, fdOff: number): RawMessage {
  const m = i * META_INTS;
  const nfds = scratchMeta[m + META_FDS]!;
  let fds: number[];
  // Literals for the common counts: packed arrays, no loop.
  if (nfds === 0) fds = [];
  else if (nfds === 1) fds = [scratchFds[fdOff]!];
  else {
    fds = new Array<number>(nfds);
    for (let k = 0; k < nfds; k++) fds[k] = scratchFds[fdOff + k]!;
  }
  return {
    data: copyOut(data, off, scratchMeta[m + META_BYTES]!),
    fds,
    flags: scratchMeta[m + META_FLAGS]!,
    control: scratchMeta[m + META_CONTROL]!,
    pidfd: scratchMeta[m + META_PIDFD]!,
  };
}

/**
 * A pidfd that arrived (SCM_PIDFD) where nobody asked to keep it (a socket
 * adopted with SO_PASSPIDFD already on): closed at once.
 */
function dropPidfd(i: number): void {
  const m = i * META_INTS + META_PIDFD;
  const pidfd = scratchMeta[m]!;
  if (pidfd < 0) return;
  native.close(pidfd);
  scratchMeta[m] = NO_PIDFD;
}

/** Close the pidfd of a message nobody will receive (none: nothing to do). */
export function discardPidfd(msg: RawMessage): void {
  if (msg.pidfd >= 0) native.close(msg.pidfd);
  msg.pidfd = NO_PIDFD;
}

/** readBatch: the socket may hold more; read again before waiting (the pump's MORE). */
export const READ_MORE = MORE;
/** readBatch: the socket was found empty; wait for readiness before reading again (the pump's DRAINED). */
export const READ_DRAINED = DRAINED;

/**
 * Read up to `maxMessages` messages (one recvmmsg, or recvmsg for one) from
 * fd without blocking, appending them to `into`. Returns READ_MORE or
 * READ_DRAINED, or a negative errno when the read failed (-EAGAIN when
 * nothing was there), having appended nothing. The fd room is always full
 * (253): a batch reads ahead for later callers, whose limits the caller
 * applies on handing a message out, so the kernel must never cut fds on
 * their behalf. With `pids`, the sender's pid of each message (from
 * SCM_CREDENTIALS on a socket with SO_PASSCRED, else 0) is appended to it.
 * With `keepPidfd`, each message's pidfd (SCM_PIDFD, on a socket with
 * SO_PASSPIDFD) is kept in it, for the caller to hand out or close; without,
 * any that arrives is closed here.
 */
export function readBatch(
  fd: number,
  maxMessages: number,
  maxBytes: number,
  connected: boolean,
  into: RawEntry[],
  pids?: number[],
  keepPidfd = false,
): number {
  let data: Buffer = scratchData;
  if (maxBytes > data.length) {
    if (!scratchBig || scratchBig.length < maxBytes) scratchBig = Buffer.allocUnsafeSlow(maxBytes);
    data = scratchBig;
    maxMessages = 1;
  }
  const meta = scratchMeta;
  const n = native.recvBatch(fd, data, scratchFds, meta, maxMessages, maxBytes, MAX_FDS, connected ? 1 : 0);
  if (n < 0) return n;
  if (scratchBig && data === scratchBig && scratchBig.length > 4 << 20) scratchBig = null;
  let off = 0;
  let fdOff = 0;
  for (let i = 0; i < n; i++) {
    if (!keepPidfd) dropPidfd(i);
    into.push(messageAt(data, i, off, fdOff));
    if (pids) pids.push(meta[i * META_INTS + META_PID]!);
    off += meta[i * META_INTS + META_BYTES]!;
    fdOff += meta[i * META_INTS + META_FDS]!;
  }
  return meta[maxMessages * META_INTS] === BATCH_DRAINED ? READ_DRAINED : READ_MORE;
}

/**
 * Read one runc-sized message (< 4096 bytes) into the scratch buffers,
 * waiting in poll(2) while a non-blocking fd has none: for the *Sync
 * functions only. Null when it is there, else the failure.
 */
function readOneIntoScratch(fd: number, connected: boolean): FdPassError | null {
  const n = waitWhileAgain(fd, native.POLLIN, () =>
    native.recvBatch(fd, scratchData, scratchFds, scratchMeta, 1, MAX_NAME_LEN, MAX_FDS, connected ? 1 : 0),
  );
  if (typeof n !== 'number') return n;
  if (n < 0) return systemError(n, 'recvmsg');
  dropPidfd(0); // a runc message names no sender
  return null;
}

/** One runc-sized message, blocking (see readOneIntoScratch); a failure as an entry. */
export function readOneSync(fd: number, connected: boolean): RawEntry {
  return readOneIntoScratch(fd, connected) ?? messageAt(scratchData, 0, 0, 0);
}

/**
 * runc's RecvFd on a socket nobody else reads (the *Sync path), blocking. The
 * common case (a name and one fd, nothing else) is decoded straight from the
 * scratch buffers; anything else goes through the full rules (fds closed on
 * error). The fd returned is the caller's.
 */
export function readFdSync(fd: number): { name: string; fd: number } | FdPassError {
  const failed = readOneIntoScratch(fd, true);
  if (failed) return failed;
  const meta = scratchMeta;
  const len = meta[META_BYTES]!;
  if (isRuncFd(len, meta[META_FDS]!, meta[META_FLAGS]!, meta[META_CONTROL]!)) {
    const received = scratchFds[0]!;
    disown(received);
    return { name: scratchData.toString('utf8', 0, len), fd: received };
  }
  const msg = messageAt(scratchData, 0, 0, 0);
  if (msg.flags & FLAG_EOF) return eofError();
  const out = toReceivedFd(msg);
  if (!(out instanceof Error)) disown(out.fd);
  return out;
}

/** A recvFd at end of file. */
export function eofError(): FdPassError {
  return new FdPassError(ErrorCodes.EOF, 'recvFd: end of file before a message');
}

const EMPTY = Buffer.alloc(0);

/**
 * A message's own copy of its bytes (the scratch buffer is reused). Small
 * messages come from Buffer's pool and are copied byte by byte: cheaper, per
 * message, than a Buffer view (subarray goes through the species constructor).
 */
function copyOut(src: Buffer, off: number, len: number): Buffer {
  if (len === 0) return EMPTY;
  const b = Buffer.allocUnsafe(len);
  if (len <= 64) {
    for (let j = 0; j < len; j++) b[j] = src[off + j]!;
  } else {
    b.set(new Uint8Array(src.buffer, src.byteOffset + off, len));
  }
  return b;
}

function fail(msg: RawMessage, code: string, message: string): FdPassError {
  discardFds(msg.fds);
  discardPidfd(msg);
  return new FdPassError(code, message);
}

/** The data/control truncation rules shared by recv and recvFd. */
function truncation(msg: RawMessage, maxFds: number): FdPassError | null {
  if (msg.flags & FLAG_CTRUNC || msg.fds.length > maxFds) {
    return fail(
      msg,
      ErrorCodes.CONTROL_TRUNCATED,
      `message carried more fds than fit (${msg.fds.length} arrived, room for ${maxFds}${
        msg.flags & FLAG_CTRUNC ? ', MSG_CTRUNC: the rest were dropped by the kernel, RLIMIT_NOFILE?' : ''
      }); the fds that arrived were closed`,
    );
  }
  if (msg.flags & FLAG_TRUNC) {
    return fail(msg, ErrorCodes.TRUNCATED, `message was larger than the receive buffer (MSG_TRUNC); its fds were closed`);
  }
  return null;
}

/**
 * runc's RecvFd rule, for a message as the kernel described it: a name of
 * less than 4096 bytes (MaxNameLen), exactly one control message, an
 * SCM_RIGHTS, with exactly one fd (runc's cmsg.go: `len(scms) != 1`,
 * `len(fds) != 1`), and nothing cut (no MSG_TRUNC, MSG_CTRUNC) nor at end of
 * file. True means the message is a (name, fd) pair as it is; false, that
 * toReceivedFd says why not.
 */
export function isRuncFd(bytes: number, nfds: number, flags: number, control: number): boolean {
  return flags === 0 && control === 1 && nfds === 1 && bytes < MAX_NAME_LEN;
}

/**
 * The rules of recv, for a message as the kernel described it: nothing cut
 * or at end of file, at most maxBytes and 253 fds. True means it is handed
 * out as it is; false, that toReceivedMessage decides.
 */
export function isPlainMessage(bytes: number, nfds: number, flags: number, maxBytes: number): boolean {
  return flags === 0 && bytes <= maxBytes && nfds <= MAX_FDS;
}

/**
 * runc's RecvFd rules (isRuncFd), with the reason when a message breaks
 * them. Unlike runc, every fd is closed on error. The rules only judge:
 * whoever hands the result out disowns its fds.
 */
export function toReceivedFd(msg: RawMessage): { name: string; fd: number } | FdPassError {
  if (isRuncFd(msg.data.length, msg.fds.length, msg.flags, msg.control)) return { name: msg.data.toString('utf8'), fd: msg.fds[0]! };
  const t = truncation(msg, MAX_FDS);
  if (t) return t;
  if (msg.data.length >= MAX_NAME_LEN) {
    return fail(msg, ErrorCodes.NAME_TOO_LONG, `recvFd: name of ${msg.data.length} bytes or more (limit ${MAX_NAME_LEN - 1})`);
  }
  const rights = msg.control & 0xff;
  const others = msg.control >> 8;
  if (rights > 1 || others > 0) {
    return fail(msg, ErrorCodes.UNEXPECTED_CONTROL, `recvFd: expected one SCM_RIGHTS, got ${rights} and ${others} other control messages`);
  }
  if (msg.fds.length === 0) return fail(msg, ErrorCodes.NO_FD, 'recvFd: the message carried no fd');
  if (msg.fds.length > 1) return fail(msg, ErrorCodes.TOO_MANY_FDS, `recvFd: expected one fd, got ${msg.fds.length}`);
  return { name: msg.data.toString('utf8'), fd: msg.fds[0]! };
}

/**
 * The rules of recv: fds beyond maxFds or cut by the kernel, and datagrams
 * longer than maxBytes, are errors (fds closed). A stream message longer than
 * maxBytes is split: the rest stays queued, without the fds. Whoever hands
 * the result out disowns its fds.
 */
export function toReceivedMessage(
  msg: RawMessage,
  maxBytes: number,
  maxFds: number,
  stream: boolean,
): { data: Buffer; fds: number[] } | { data: Buffer; fds: number[]; rest: RawMessage } | FdPassError {
  if (isPlainMessage(msg.data.length, msg.fds.length, msg.flags, maxBytes) && msg.fds.length <= maxFds) return msg;
  const t = truncation(msg, maxFds);
  if (t) return t;
  if (msg.data.length > maxBytes) {
    if (!stream)
      return fail(
        msg,
        ErrorCodes.TRUNCATED,
        `message of ${msg.data.length} bytes is larger than maxBytes (${maxBytes}); its fds were closed`,
      );
    return {
      data: msg.data.subarray(0, maxBytes),
      fds: msg.fds,
      rest: { data: msg.data.subarray(maxBytes), fds: [], flags: 0, control: 0, pidfd: NO_PIDFD },
    };
  }
  return { data: msg.data, fds: msg.fds };
}

/**
 * The rule of a byte stream that carries fds (FdStream): fds the kernel cut
 * (MSG_CTRUNC: no room, or RLIMIT_NOFILE) cannot be placed in the stream any
 * more, so the stream is unusable; the fds that arrived are closed. Null for
 * a chunk that is fine.
 */
export function streamChunkError(msg: RawMessage): FdPassError | null {
  if (!(msg.flags & FLAG_CTRUNC)) return null;
  return fail(
    msg,
    ErrorCodes.CONTROL_TRUNCATED,
    `fds sent with the stream did not fit (MSG_CTRUNC, RLIMIT_NOFILE?); ${msg.fds.length} that arrived were closed and the stream is unusable`,
  );
}
