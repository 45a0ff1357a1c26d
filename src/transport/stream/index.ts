// FdStream: a stream.Duplex over an AF_UNIX stream socket whose bytes carry
// fds, for stream protocols that attach fds to positions in the byte stream
// (D-Bus UNIX_FD, Wayland, X11).
//
// Where fds sit. The kernel attaches the fds of one sendmsg to the first byte
// of its data. One recvmsg may glue fd-less bytes of earlier writes in front
// of the fd-carrying part, but it stops inside (or at the end of) the write
// whose fds it brings: the last byte of a chunk that came with fds is always
// a byte of the write that carried them. So FdStream keeps each chunk's fds
// keyed by the stream offset of the chunk's end. Bytes leave the Readable only
// through 'data' (paused read() emits it too); once a chunk's last byte has
// left, its fds are "pending": read(size, fdCount) takes them, 'fds'
// listeners take them, or they stay queued (takeFds()) and are closed with
// the stream. A reader that reads one message at a time gets each message's
// fds with the read of that message, never with an earlier one.
import { constants } from 'node:os';
import { Duplex, addAbortSignal } from 'node:stream';
import type { DuplexOptions } from 'node:stream';
import { encodeAddress, type AddressOptions } from '../../base/address.js';
import {
  ErrorCodes,
  FdPassError,
  checkSignal,
  closedError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
} from '../../base/errors.js';
import { FdLike, toFdArray } from '../../base/fds.js';
import { discardFds, disownAll, own } from '../../io/owned.js';
import { SendQueue } from '../../io/send.js';
import {
  adoptSocket,
  checkAcceptFds,
  connectSocket,
  peerCredentials,
  refuseFds,
  socketPair,
  type PeerCredentials,
} from '../../io/sockops.js';
import { ENDED, Pump } from '../../io/pump.js';
import { native } from '../../base/native.js';
import { FLAG_EOF, RawEntry, readBatch, streamChunkError } from '../../io/recv.js';
import { FdSocket, emptyDataError } from '../socket.js';
import { type Pidfd, peerPidfd } from '../pidfd.js';

const SHUT_WR = 1;
const { ENOTCONN, EISCONN } = constants.errno;
/** Bytes asked for per recvmsg, and recvmsg calls per batch: at most 512 KiB read ahead of demand. */
const READ_BYTES = 65536;
const READ_MESSAGES = 8;

/** Options of an FdStream (those of stream.Duplex, with net.Socket's allowHalfOpen default). */
export interface FdStreamOptions {
  /** Keep the writable side open after the peer ended (default false, like net.Socket). */
  allowHalfOpen?: boolean;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
  /** Destroys the stream when aborted. */
  signal?: AbortSignal;
  /** Adopt this connected AF_UNIX stream socket fd (the stream owns it from now on). */
  fd?: number;
  /**
   * false: the kernel refuses fds the peer sends on this stream
   * (SO_PASSRIGHTS off; the peer's write fails with ERR_FDPASS_FDS_REFUSED).
   * Linux >= 6.16, else ERR_FDPASS_UNSUPPORTED_KERNEL. Default true.
   */
  acceptFds?: boolean;
}

/** Where to connect: a path or an abstract name (no leading NUL). */
export type FdStreamConnectOptions = Omit<AddressOptions, 'type'> & FdStreamOptions;

/** A write that carries fds: they travel with the first byte of `data`. */
export interface FdWrite {
  data: string | Uint8Array;
  /** 0 to 253 fds (numbers or objects that own one); still yours: close them once `callback` ran. */
  fds?: readonly FdLike[];
  /** Called once the data (and the fds) are in the kernel, or with the error. */
  callback?: (error?: Error | null) => void;
}

/** What read(size, fdCount) returns: bytes and the fds that came with them (yours to close). */
export interface FdChunk {
  data: Buffer | null;
  fds: number[];
}

type WriteCallback = (error?: Error | null) => void;

/**
 * What fdpass/usocket needs of an FdStream beyond its public API.
 * @internal
 */
export interface StreamInternals {
  /** Adopt a connected AF_UNIX stream socket fd into an unconnected stream; throws (leaving both as they were) if it cannot. */
  adopt(stream: FdStream, fd: number): void;
  /** Fds that have arrived and nobody took: pending ones and those of bytes still buffered. */
  arrivedFds(stream: FdStream): number;
  /** Put fds back in front of the pending ones (the library owns them again). */
  putBackFds(stream: FdStream, fds: readonly number[]): void;
}

/** @internal */
export let streamInternals: StreamInternals;

interface FdGroup {
  /** Stream offset just past the chunk the fds came with. */
  end: number;
  fds: number[];
}

// Byte checks go by ArrayBuffer.isView, never instanceof: a Buffer or
// Uint8Array made in another realm (a vm context, a test sandbox such as
// Jest's) is bytes too, and fails an instanceof against this realm's class.
function isFdWrite(chunk: unknown): chunk is FdWrite {
  return typeof chunk === 'object' && chunk !== null && !ArrayBuffer.isView(chunk) && 'data' in chunk;
}

function toBuffer(data: unknown, name: string): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgType(name, 'of type string or an instance of Buffer, TypedArray or DataView', data);
}

function checkFdCount(fdCount: unknown): number {
  if (fdCount === null) return Infinity;
  if (typeof fdCount !== 'number') throw invalidArgType('fdCount', 'of type number or null', fdCount);
  if (!Number.isInteger(fdCount) || fdCount < 0) throw outOfRange('fdCount', 'an integer >= 0, or null for all', fdCount);
  return fdCount;
}

/** A connected AF_UNIX stream socket fd, made non-blocking and close-on-exec. */
function checkStreamFd(fd: unknown): number {
  adoptSocket(fd, { listening: false, type: native.SOCK_STREAM });
  return fd as number;
}

/**
 * A `stream.Duplex` over an AF_UNIX stream socket whose writes and reads
 * carry fds, with net.Socket's events and habits: 'connect', 'data', 'end',
 * 'close', 'error', `end()` (half-close), `destroy()`, `setNoDelay()`.
 *
 * - `write(buffer)` as usual, or `write({ data, fds, callback })`: the fds go
 *   with the first byte of `data`, in order with the other writes.
 * - `read(size)` as usual; `read(size, fdCount)` → `{ data, fds }`, the fds
 *   that came with those bytes (and with bytes read earlier without taking
 *   fds), at most `fdCount` of them (`null`: all).
 * - Flowing mode: an `'fds'` event, emitted just before the `'data'` event of
 *   the chunk whose bytes the fds came with, hands them to its listeners.
 * - Fds nobody took are closed when the stream is destroyed.
 */
export class FdStream extends Duplex {
  #fd = -1;
  #reader: Pump | null = null;
  #connecting = false;
  // No AbortController: a sandbox (Jest's, a vm context) may lack the global.
  #connectAbort: { aborted: boolean } | null = null;
  // reading
  #readWanted = false;
  #eof = false;
  #pushedBytes = 0; // bytes received from the socket (bytesRead)
  #readOffset = 0;
  #incoming: FdGroup[] = [];
  #pending: number[] = [];
  #claiming = false;
  // writing
  readonly #sends = new SendQueue(() => this.#reader?.update());
  #final: WriteCallback | null = null;
  #fdsOf = new WeakMap<Buffer, Int32Array>();
  #peer: PeerCredentials | undefined;
  readonly #acceptFds: boolean;

  constructor(options: FdStreamOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const duplexOptions: DuplexOptions = {
      allowHalfOpen: options.allowHalfOpen ?? false,
      decodeStrings: true,
      emitClose: true,
      autoDestroy: true,
    };
    if (options.readableHighWaterMark !== undefined) duplexOptions.readableHighWaterMark = options.readableHighWaterMark;
    if (options.writableHighWaterMark !== undefined) duplexOptions.writableHighWaterMark = options.writableHighWaterMark;
    const signal = checkSignal(options.signal);
    const acceptFds = checkAcceptFds(options.acceptFds);
    const fd = options.fd === undefined ? -1 : checkStreamFd(options.fd);
    if (fd >= 0 && !acceptFds) refuseFds(fd);
    super(duplexOptions);
    this.#acceptFds = acceptFds;
    if (fd >= 0) this.#attach(fd);
    // After the fields exist: an aborted signal destroys the stream at once.
    if (signal) addAbortSignal(signal, this);
  }

  static {
    streamInternals = {
      adopt: (stream, fd) => {
        if (stream.#fd >= 0 || stream.#connecting || stream.destroyed) {
          throw new FdPassError('EISCONN', 'the stream is already connected or connecting', { errno: -EISCONN });
        }
        checkStreamFd(fd);
        if (!stream.#acceptFds) refuseFds(fd);
        stream.#attach(fd);
      },
      arrivedFds: (stream) => stream.#incoming.reduce((n, g) => n + g.fds.length, stream.#pending.length),
      putBackFds: (stream, fds) => {
        // Fds nobody took are closed with the stream: so are these, if it is gone.
        if (stream.destroyed) return discardFds(fds);
        for (const fd of fds) own(fd);
        stream.#pending.unshift(...fds);
      },
    };
  }

  /** Bytes received from the socket. */
  get bytesRead(): number {
    return this.#pushedBytes;
  }

  /** Bytes handed to the socket. */
  get bytesWritten(): number {
    return this.#sends.bytesSent;
  }

  /** Connect to a listening stream socket; 'connect' follows (and `listener`, if given). */
  static connect(arg: string | FdStreamConnectOptions, listener?: () => void): FdStream {
    const options = typeof arg === 'string' ? {} : arg;
    const stream = new FdStream({ ...options, fd: undefined });
    return stream.connect(arg, listener);
  }

  /** Adopt a connected AF_UNIX stream socket fd (the stream owns it from now on). */
  static fromFd(fd: number, options: Omit<FdStreamOptions, 'fd'> = {}): FdStream {
    return new FdStream({ ...options, fd });
  }

  /**
   * Wrap an FdSocket of type 'stream' (from FdServer or FdSocket.connect).
   * The FdSocket is released (it gives up its fd and closes); messages it had
   * buffered are dropped, so wrap it before reading from it.
   */
  static fromSocket(socket: FdSocket, options: Omit<FdStreamOptions, 'fd'> = {}): FdStream {
    if (!(socket instanceof FdSocket)) throw invalidArgType('socket', 'an instance of FdSocket', socket);
    if (socket.type !== 'stream') throw invalidArgValue('socket', "must be of type 'stream'", socket.type);
    const fd = socket.release();
    try {
      return new FdStream({ ...options, fd });
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }

  /** Two connected streams (socketpair(2)). */
  static pair(options: Omit<FdStreamOptions, 'fd'> = {}): [FdStream, FdStream] {
    const [a, b] = socketPair(native.SOCK_STREAM);
    let first: FdStream | undefined;
    try {
      first = new FdStream({ ...options, fd: a });
      return [first, new FdStream({ ...options, fd: b })];
    } catch (err) {
      // Bad options: neither end may stay open.
      if (first) first.destroy();
      else native.close(a);
      native.close(b);
      throw err;
    }
  }

  /**
   * Connect this (unconnected) stream to a path or abstract name. Writes
   * before the connection wait for it. Errors come as 'error'.
   */
  connect(arg: string | FdStreamConnectOptions, listener?: () => void): this {
    if (this.#fd >= 0 || this.#connecting)
      throw new FdPassError('EISCONN', 'the stream is already connected or connecting', { errno: -EISCONN });
    if (listener !== undefined && typeof listener !== 'function') throw invalidArgType('listener', 'a function', listener);
    const where = typeof arg === 'string' ? { path: arg } : arg;
    if (where === null || typeof where !== 'object') throw invalidArgType('options', 'a path string or an options object', arg);
    const address: AddressOptions = {};
    if (where.path !== undefined) address.path = where.path;
    if (where.abstract !== undefined) address.abstract = where.abstract;
    // Bad arguments throw here, before anything changes.
    const resolved = encodeAddress(address);
    const abort = { aborted: false };
    const connecting = connectSocket(resolved, native.SOCK_STREAM, abort, this.#acceptFds);
    if (listener) this.once('connect', listener);
    this.#connecting = true;
    this.#connectAbort = abort;
    connecting.then(
      (fd) => {
        this.#connectAbort = null;
        this.#connecting = false;
        if (this.destroyed) {
          native.close(fd);
          return;
        }
        this.#attach(fd);
        // Out of the promise chain, so that a throwing listener is an uncaught exception.
        process.nextTick(() => {
          if (this.destroyed) return;
          this.emit('connect');
          this.emit('ready');
        });
      },
      (err: Error) => {
        this.#connectAbort = null;
        this.#connecting = false;
        if (!this.destroyed) this.destroy(err);
      },
    );
    return this;
  }

  #attach(fd: number): void {
    this.#reader = new Pump(fd, {
      demand: () => this.#readWanted && !this.#eof && this.#fd >= 0 && !this.destroyed,
      step: () => this.#step(),
      readFailed: (errno) => this.destroy(systemError(errno, 'recvmsg')),
      failed: (err) => this.destroy(err),
      writePending: () => this.#sends.length > 0,
      writable: () => this.#sends.flush(this.#fd),
    });
    this.#fd = fd;
    // Work that waited for the connection.
    this.#sends.flush(fd);
    if (this.#final) this.#doFinal();
    this.#reader.pump();
  }

  /** The socket's fd; -1 before it is connected and once destroyed. */
  get fd(): number {
    return this.#fd;
  }

  /** True while connect() is in progress. */
  get connecting(): boolean {
    return this.#connecting;
  }

  /** True until the stream has a connected socket. */
  get pending(): boolean {
    return this.#fd < 0;
  }

  /** net.Socket's readyState: 'opening', 'open', 'readOnly', 'writeOnly' or 'closed'. */
  get readyState(): 'opening' | 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.#connecting) return 'opening';
    if (this.destroyed || this.#fd < 0) return 'closed';
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  /** Credentials of the peer (SO_PEERCRED) as of connect(). */
  get peer(): PeerCredentials {
    if (!this.#peer) {
      if (this.#fd < 0) throw new FdPassError(this.destroyed ? ErrorCodes.CLOSED : 'ENOTCONN', 'the stream has no connected socket');
      this.#peer = peerCredentials(this.#fd);
    }
    return this.#peer;
  }

  /**
   * A Pidfd of the peer process (SO_PEERPIDFD, Linux >= 6.5; ENOPROTOOPT on
   * older kernels), safe from pid reuse. Yours to close.
   */
  peerPidfd(): Pidfd {
    if (this.#fd < 0) throw new FdPassError(this.destroyed ? ErrorCodes.CLOSED : 'ENOTCONN', 'the stream has no connected socket');
    return peerPidfd(this.#fd);
  }

  /** Fds received with bytes already read and taken by nobody yet. */
  get pendingFds(): number {
    return this.#pending.length;
  }

  /** A no-op (AF_UNIX has no Nagle), for code written for net.Socket. */
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  /** A no-op (AF_UNIX has no keep-alive), for code written for net.Socket. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** Not supported: fds sit at byte positions, and decoding would hide them. Decode the Buffers yourself. */
  override setEncoding(_encoding: BufferEncoding): this {
    const err = new TypeError('FdStream does not decode: fds sit at byte offsets; decode the Buffers yourself') as TypeError & {
      code: string;
    };
    err.code = 'ERR_METHOD_NOT_IMPLEMENTED';
    throw err;
  }

  // ---- reading -----------------------------------------------------------------

  /**
   * `read(size?)` is Readable's. `read(size, fdCount)` returns `{ data, fds }`:
   * `data` as `read(size)` would return it, and fds in the order they came:
   * with `fdCount` null, all fds that came with the bytes read so far (this
   * read's and earlier reads') and were not taken yet; with a number, that
   * many fds, taking fds that came with bytes still buffered if need be (for
   * protocols that count fds per message), fewer if fewer have arrived.
   * Returns null, taking nothing, when `size` bytes are not there yet. With
   * size 0, takes only fds: `{ data: null, fds }`.
   */
  override read(size?: number): Buffer | null;
  override read(size: number | undefined, fdCount: number | null): FdChunk | null;
  override read(size?: number, fdCount?: number | null): Buffer | FdChunk | null {
    if (fdCount === undefined) return super.read(size) as Buffer | null;
    const max = checkFdCount(fdCount);
    let data: Buffer | null;
    this.#claiming = true;
    try {
      data = super.read(size) as Buffer | null;
    } finally {
      this.#claiming = false;
    }
    if (data === null && size !== 0) return null;
    return { data: size === 0 ? null : data, fds: max === Infinity ? this.#take(max) : this.#takeAhead(max) };
  }

  /** Take fds that came with bytes already read (at most `max`); yours to close. */
  takeFds(max?: number): number[] {
    return this.#take(max === undefined ? Infinity : checkFdCount(max));
  }

  #take(max: number): number[] {
    const n = Math.min(max, this.#pending.length);
    if (n === 0) return [];
    const fds = this.#pending.splice(0, n);
    disownAll(fds);
    return fds;
  }

  /** Take `count` fds: pending ones first, then those of chunks still buffered. */
  #takeAhead(count: number): number[] {
    const fds = this.#take(count);
    while (fds.length < count && this.#incoming.length > 0) {
      const group = this.#incoming[0]!;
      const taken = group.fds.splice(0, count - fds.length);
      disownAll(taken);
      fds.push(...taken);
      if (group.fds.length === 0) this.#incoming.shift();
    }
    return fds;
  }

  override unshift(chunk: unknown, encoding?: BufferEncoding): void {
    if (ArrayBuffer.isView(chunk)) this.#readOffset = Math.max(0, this.#readOffset - chunk.byteLength);
    super.unshift(chunk, encoding);
  }

  // Every byte leaves the Readable through a 'data' event (read() emits it
  // too): that is where fds become pending, and where 'fds' listeners get them.
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data' && ArrayBuffer.isView(args[0])) this.#consumed(args[0].byteLength);
    return super.emit(event, ...args);
  }

  #consumed(bytes: number): void {
    this.#readOffset += bytes;
    let moved = false;
    while (this.#incoming.length > 0 && this.#incoming[0]!.end <= this.#readOffset) {
      const group = this.#incoming.shift()!;
      for (const fd of group.fds) this.#pending.push(fd);
      moved = true;
    }
    if (moved && !this.#claiming && this.listenerCount('fds') > 0) {
      const fds = this.#take(Infinity);
      super.emit('fds', fds);
    }
  }

  /** @internal */
  override _read(_size: number): void {
    this.#readWanted = true;
    this.#reader?.pump();
  }

  /** The pump's step: read a batch and push it. */
  #step(): number {
    // A fresh array per batch: push() runs listeners that may read again.
    const r: RawEntry[] = [];
    const status = readBatch(this.#fd, READ_MESSAGES, READ_BYTES, true, r);
    if (status < 0) return status;
    for (let i = 0; i < r.length; i++) {
      // A 'data' listener run by push() may have destroyed the stream: the
      // rest of the batch has nobody to go to.
      const failure = this.destroyed ? 'destroyed' : this.#admit(r[i]!);
      if (failure) {
        for (let j = failure === 'destroyed' ? i : i + 1; j < r.length; j++) {
          const e = r[j]!;
          if (!(e instanceof Error)) discardFds(e.fds);
        }
        if (failure instanceof Error && !this.destroyed) this.destroy(failure);
        return ENDED;
      }
    }
    return status;
  }

  /** Push one received chunk; returns 'eof', an error, or null. */
  #admit(entry: RawEntry): Error | 'eof' | null {
    if (entry instanceof Error) return entry;
    if (entry.flags & FLAG_EOF) {
      this.#eof = true;
      this.#readWanted = false;
      this.push(null);
      return 'eof';
    }
    const cut = streamChunkError(entry);
    if (cut) return cut;
    this.#pushedBytes += entry.data.length;
    if (entry.fds.length > 0) this.#incoming.push({ end: this.#pushedBytes, fds: entry.fds });
    // push() may run 'data' listeners (flowing mode) that destroy the stream.
    if (!this.push(entry.data)) this.#readWanted = false;
    return null;
  }

  // ---- writing -----------------------------------------------------------------

  /**
   * Write a Buffer, Uint8Array or string, or `{ data, fds, callback }`: the
   * fds travel with the first byte of `data` (at least one byte), in order
   * with the other writes. The fds are still yours: close them once the
   * callback ran. Returns false when the caller should wait for 'drain'.
   */
  override write(chunk: unknown, callback?: WriteCallback): boolean;
  override write(chunk: unknown, encoding: BufferEncoding, callback?: WriteCallback): boolean;
  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (isFdWrite(chunk)) {
      const data = toBuffer(chunk.data, 'data');
      const fds = toFdArray(chunk.fds);
      const cb = chunk.callback ?? callback;
      if (cb !== undefined && typeof cb !== 'function') throw invalidArgType('callback', 'a function', cb);
      if (fds && data.length === 0) throw emptyDataError();
      if (fds) {
        // toBuffer's Buffer is our own: _write finds the fds by its identity.
        this.#fdsOf.set(data, fds);
        return cb ? super.write(data, cb) : super.write(data);
      }
      return cb ? super.write(data, cb) : super.write(data);
    }
    if (encoding !== undefined) return callback ? super.write(chunk, encoding, callback) : super.write(chunk, encoding);
    return callback ? super.write(chunk, callback) : super.write(chunk);
  }

  /** @internal */
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    // Before the connection (fd -1) the write waits in the queue.
    this.#sends.write(this.#fd, chunk, this.#fdsOf.get(chunk) ?? null, callback);
  }

  /** @internal */
  override _final(callback: WriteCallback): void {
    // Writable calls this once every write is out: only the connection may be missing.
    this.#final = callback;
    if (this.#fd >= 0) this.#doFinal();
  }

  /** Half-close: the peer sees end of file. */
  #doFinal(): void {
    const callback = this.#final;
    if (!callback) return;
    this.#final = null;
    const r = native.shutdown(this.#fd, SHUT_WR);
    // ENOTCONN: the peer is gone already; nothing is left to flush.
    callback(r < 0 && r !== -ENOTCONN ? systemError(r, 'shutdown') : null);
  }

  // ---- polling and lifetime ------------------------------------------------------

  /** @internal */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#connectAbort) this.#connectAbort.aborted = true;
    this.#connectAbort = null;
    this.#reader?.close();
    this.#reader = null;
    this.#fd = -1;
    // A write in flight: its caller keeps its fds until the callback runs.
    this.#sends.close(error ?? closedError('stream'));
    this.#final = null;
    // Fds nobody took are closed with the stream.
    for (const group of this.#incoming) discardFds(group.fds);
    this.#incoming = [];
    discardFds(this.#pending);
    this.#pending = [];
    callback(error);
  }
}
