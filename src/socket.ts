// FdSocket: a connected AF_UNIX socket on the event loop that sends and
// receives messages with fds. Reads happen only on demand (a pending recv, an
// iterator, a 'message' listener) and at most one batch is buffered; fds in
// buffered messages belong to the socket and are closed with it.
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { AddressOptions, ResolvedAddress, SocketType, addressOptions, encodeAddress, socketTypeName, socketTypeNumber } from './address.js';
import { ErrorCodes, FdPassError, checkSignal, abortError, closedError, invalidArgType, outOfRange, systemError } from './errors.js';
import { FdLike, checkFdNumber, toFd, toFdArray } from './fds.js';
import { watch } from './io/backend.js';
import { POLLERR, POLLIN, POLLOUT, type Readiness } from './io/readiness.js';
import { native } from './native.js';
import {
  BATCH,
  DEFAULT_MAX_BYTES,
  FLAG_EOF,
  MAX_FDS,
  MAX_NAME_LEN,
  RawEntry,
  RawMessage,
  discardFds,
  disownAll,
  eofError,
  READ_DRAINED,
  readBatch,
  readOneSync,
  toReceivedFd,
  toReceivedMessage,
} from './recv.js';

/** Credentials of the peer process, from SO_PEERCRED (as of connect()). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** A received message: its bytes and the fds that came with them (yours to close). */
export interface ReceivedMessage {
  data: Buffer;
  fds: number[];
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

export interface ConnectOptions extends AddressOptions {
  signal?: AbortSignal;
}

export interface FdSocketEvents {
  message: [message: ReceivedMessage];
  error: [error: Error];
  end: [];
  close: [];
}

const MAX_MAX_BYTES = 16 << 20;
const RESOLVED: Promise<void> = Promise.resolve();
const BATCHES_PER_WAKE = 16;

type Waiter =
  | {
      kind: 'recv';
      maxBytes: number;
      maxFds: number;
      resolve: (m: ReceivedMessage | null) => void;
      reject: (e: Error) => void;
      cleanup: (() => void) | null;
    }
  | {
      kind: 'fd';
      maxBytes: number;
      maxFds: number;
      resolve: (m: ReceivedFd) => void;
      reject: (e: Error) => void;
      cleanup: (() => void) | null;
    }
  | {
      kind: 'iter';
      maxBytes: number;
      maxFds: number;
      resolve: (r: IteratorResult<ReceivedMessage>) => void;
      reject: (e: Error) => void;
      cleanup: (() => void) | null;
    };

interface WriteRequest {
  data: Uint8Array;
  offset: number;
  fds: Int32Array | null;
  resolve: () => void;
  reject: (e: Error) => void;
}

function checkData(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw invalidArgType('data', 'of type string or an instance of Buffer or Uint8Array', data);
}

function checkLimit(value: unknown, name: string, def: number, max: number, min: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, value);
  return value;
}

function checkOptions(options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  return options as Record<string, unknown>;
}

// The last name encoded: senders of many fds mostly repeat one name. The
// bytes are never handed out nor written to, so sharing them is safe.
let lastName = '';
let lastNameBytes: Buffer = Buffer.alloc(0);
// The fd of a sendFd on its way into sendmsg (copied if the send is queued).
const oneFd = new Int32Array(1);

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

const AF_UNIX = 1;

/**
 * A connected AF_UNIX socket (stream, seqpacket or dgram) that carries fds.
 *
 * Events: 'message' (a ReceivedMessage: its fds are the listener's to close),
 * 'end' (the peer closed), 'error', 'close'.
 */
export class FdSocket extends EventEmitter<FdSocketEvents> {
  /** Socket type: 'stream', 'seqpacket' or 'dgram'. */
  readonly type: SocketType;
  #fd: number;
  #io: Readiness | null;
  #readInterest = false;
  // The last read found the kernel queue empty: wait for readiness, not read.
  #drained = false;
  #peer: PeerCredentials | undefined;
  #closed = false;
  #eof = false;
  #ended = false;
  #closePromise: Promise<void> | null = null;
  #pumping = false;
  // Messages read from the kernel and not yet delivered (one batch at most).
  #queue: RawEntry[] = [];
  #qhead = 0;
  #waiters: Waiter[] = [];
  #whead = 0;
  #writes: WriteRequest[] = [];
  #wrhead = 0;
  #endRequested: { resolve: () => void; reject: (e: Error) => void }[] | null = null;
  readonly #stream: boolean;
  readonly #connected: boolean;
  #keepOwned = false;

  /** @internal Use FdSocket.connect, FdSocket.pair, FdSocket.fromFd or FdServer. */
  constructor(fd: number, type: number, peer?: PeerCredentials) {
    super();
    this.#fd = fd;
    this.type = socketTypeName(type);
    this.#stream = type === native.SOCK_STREAM;
    this.#connected = type !== native.SOCK_DGRAM;
    this.#peer = peer;
    this.#io = watch(fd, (events) => this.#onPoll(events));
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'message') queueMicrotask(() => this.#pump());
    });
  }

  /**
   * Connect to a listening socket by path or abstract name. Bad arguments
   * throw at once; connection errors (ENOENT, ECONNREFUSED...) reject.
   */
  static connect(arg: string | ConnectOptions): Promise<FdSocket> {
    const options = addressOptions<ConnectOptions>(arg, 'path');
    const address = encodeAddress(options);
    const type = socketTypeNumber(options.type);
    const signal = checkSignal(options.signal);
    return FdSocket.#connect(address, type, signal);
  }

  static async #connect(address: ResolvedAddress, type: number, signal: AbortSignal | undefined): Promise<FdSocket> {
    if (signal?.aborted) throw abortError(signal);
    const fd = native.socket(type);
    if (fd < 0) throw systemError(fd, 'socket');
    // A non-blocking AF_UNIX connect fails with EAGAIN while the listener's
    // backlog is full; it never completes later on its own, so retry.
    let delay = 1;
    for (;;) {
      const r = native.connect(fd, address.bytes);
      if (r === 0) break;
      if (r !== native.EAGAIN) {
        native.close(fd);
        throw systemError(r, 'connect', address.display);
      }
      try {
        await sleep(delay, undefined, signal ? { signal } : undefined);
      } catch (err) {
        native.close(fd);
        throw signal ? abortError(signal) : err;
      }
      delay = Math.min(delay * 2, 50);
    }
    return new FdSocket(fd, type);
  }

  /** A connected pair of sockets (socketpair(2)). */
  static pair(type?: SocketType): [FdSocket, FdSocket] {
    const t = socketTypeNumber(type);
    const r = native.socketpair(t, pairBuf);
    if (r < 0) throw systemError(r, 'socketpair');
    const a = pairBuf[0]!;
    const b = pairBuf[1]!;
    return [new FdSocket(a, t), new FdSocket(b, t)];
  }

  /**
   * Adopt a socket fd (inherited, or received from a peer). The FdSocket owns
   * it from now on; it is made non-blocking and close-on-exec.
   */
  static fromFd(fd: number): FdSocket {
    checkFdNumber(fd);
    const info = socketInfo(fd);
    if (info.domain !== AF_UNIX) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${fd} is not an AF_UNIX socket`);
    if (info.listening) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${fd} is a listening socket: use FdServer.fromFd`);
    const r = native.setFlags(fd, 1, 1);
    if (r < 0) throw systemError(r, 'fcntl');
    return new FdSocket(fd, info.type);
  }

  /**
   * A datagram socket bound to a path or abstract name, receiving from any
   * sender (the receiving side of `notify`-like protocols).
   */
  static bindDatagram(arg: string | AddressOptions): FdSocket {
    const options = addressOptions<AddressOptions>(arg, 'path');
    const address = encodeAddress(options);
    const type = socketTypeNumber(options.type ?? 'dgram');
    const fd = native.socket(type);
    if (fd < 0) throw systemError(fd, 'socket');
    const r = native.bind(fd, address.bytes);
    if (r < 0) {
      native.close(fd);
      throw systemError(r, 'bind', address.display);
    }
    return new FdSocket(fd, type);
  }

  /** The socket's fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Credentials of the peer (SO_PEERCRED) as of connect() or socketpair(). */
  get peer(): PeerCredentials {
    if (!this.#peer) {
      if (this.#closed) throw closedError();
      this.#peer = peerCredentials(this.#fd);
    }
    return this.#peer;
  }

  /** Sends queued in user space, waiting for room in the kernel (backpressure). */
  get pendingSends(): number {
    return this.#writes.length - this.#wrhead;
  }

  // ---- sending ---------------------------------------------------------------

  /**
   * Send data with 0 to 253 fds in one SCM_RIGHTS. Resolves once the kernel has
   * all of it (the caller still owns the fds and may close them then). Sends
   * keep their order; when the socket buffer is full they wait.
   */
  send(data: string | Uint8Array, fds?: readonly FdLike[]): Promise<void> {
    const bytes = checkData(data);
    const fdArray = toFdArray(fds);
    if (fdArray && bytes.length === 0 && this.#stream) throw emptyDataError();
    return this.#send(bytes, fdArray);
  }

  /** runc's SendFd: the payload is the name, with one fd. */
  sendFd(name: string, fd: FdLike): Promise<void> {
    const bytes = encodeName(name);
    const f = toFd(fd);
    if (bytes.length === 0 && this.#stream) throw emptyDataError();
    oneFd[0] = f;
    // #send copies the scratch array if the send has to wait in the queue.
    return this.#send(bytes, oneFd);
  }

  #send(data: Uint8Array, fds: Int32Array | null): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#endRequested) return Promise.reject(new FdPassError('EPIPE', 'send after end()', { errno: -32, syscall: 'sendmsg' }));
    if (this.#wrhead === this.#writes.length) {
      // Nothing queued: try at once, the common case needs no poll at all.
      const r = native.sendmsg(this.#fd, data, 0, data.length, fds, fds ? fds.length : 0, null);
      if (r === data.length) return RESOLVED;
      if (r < 0 && r !== native.EAGAIN) return Promise.reject(systemError(r, 'sendmsg'));
      // A partial write: the fds went with the first byte; queue a copy of the rest.
      if (r > 0) return this.#queueWrite(data.subarray(r), 0, null);
      return this.#queueWrite(data, 0, fds === oneFd ? oneFd.slice() : fds);
    }
    return this.#queueWrite(data, 0, fds === oneFd ? oneFd.slice() : fds);
  }

  #queueWrite(data: Uint8Array, offset: number, fds: Int32Array | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // Copy what the caller may reuse once send() returned.
      this.#writes.push({ data: Uint8Array.prototype.slice.call(data, offset), offset: 0, fds, resolve, reject });
      this.#updatePoll();
    });
  }

  #flushWrites(): void {
    while (this.#wrhead < this.#writes.length && !this.#closed) {
      const w = this.#writes[this.#wrhead]!;
      const len = w.data.length - w.offset;
      const r = native.sendmsg(this.#fd, w.data, w.offset, len, w.fds, w.fds ? w.fds.length : 0, null);
      if (r === native.EAGAIN) break;
      if (r < 0) {
        this.#writes[this.#wrhead++] = undefined as unknown as WriteRequest;
        w.reject(systemError(r, 'sendmsg'));
        continue;
      }
      // The fds went with the first byte; the rest of a partial write goes alone.
      w.fds = null;
      w.offset += r;
      if (w.offset < w.data.length) break;
      this.#writes[this.#wrhead++] = undefined as unknown as WriteRequest;
      w.resolve();
    }
    if (this.#wrhead === this.#writes.length) {
      this.#writes.length = 0;
      this.#wrhead = 0;
      if (this.#endRequested) this.#finishEnd();
    } else if (this.#wrhead > 1024 && this.#wrhead * 2 > this.#writes.length) {
      this.#writes = this.#writes.slice(this.#wrhead);
      this.#wrhead = 0;
    }
  }

  /**
   * Half-close: once queued sends are out, shutdown(SHUT_WR). The peer sees
   * end of file; this side can still receive.
   */
  end(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<void>((resolve, reject) => {
      (this.#endRequested ??= []).push({ resolve, reject });
      if (this.#wrhead === this.#writes.length) this.#finishEnd();
    });
  }

  #finishEnd(): void {
    const waiting = this.#endRequested ?? [];
    this.#endRequested = [];
    if (this.#ended) {
      for (const w of waiting) w.resolve();
      return;
    }
    this.#ended = true;
    const r = native.shutdown(this.#fd, 1);
    for (const w of waiting) {
      if (r < 0) w.reject(systemError(r, 'shutdown'));
      else w.resolve();
    }
  }

  // ---- receiving -------------------------------------------------------------

  /**
   * Receive one message: its bytes and fds, or null at end of file (or once
   * the socket is closed). On a stream socket a message is what one recvmsg
   * returns: bytes of several sends may come together, never past fds.
   */
  recv(options?: RecvOptions): Promise<ReceivedMessage | null> {
    if (options === undefined) {
      const ready = this.#takeReady(DEFAULT_MAX_BYTES, false);
      if (ready) return Promise.resolve({ data: ready.data, fds: ready.fds });
    }
    const o = checkOptions(options);
    const signal = checkSignal(o.signal);
    const maxBytes = checkLimit(o.maxBytes, 'options.maxBytes', DEFAULT_MAX_BYTES, MAX_MAX_BYTES, 1);
    const maxFds = checkLimit(o.maxFds, 'options.maxFds', MAX_FDS, MAX_FDS, 0);
    return new Promise<ReceivedMessage | null>((resolve, reject) => {
      this.#addWaiter({ kind: 'recv', maxBytes, maxFds, resolve, reject, cleanup: null }, signal);
    });
  }

  /**
   * runc's RecvFd: one message whose bytes are a name (< 4096 bytes) and which
   * carries exactly one fd. Anything else is an ERR_FDPASS_* error, and every
   * fd that arrived is closed first.
   */
  recvFd(options?: RecvFdOptions): Promise<ReceivedFd> {
    if (options === undefined) {
      const ready = this.#takeReady(MAX_NAME_LEN - 1, true);
      if (ready) return Promise.resolve({ name: ready.data.toString('utf8'), fd: ready.fds[0]! });
    }
    const o = checkOptions(options);
    const signal = checkSignal(o.signal);
    return new Promise<ReceivedFd>((resolve, reject) => {
      this.#addWaiter({ kind: 'fd', maxBytes: MAX_NAME_LEN, maxFds: MAX_FDS, resolve, reject, cleanup: null }, signal);
    });
  }

  /** Iterate over messages until end of file; each message's fds are yours. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    const iterator: AsyncIterableIterator<ReceivedMessage> = {
      next: () => {
        const ready = this.#takeReady(DEFAULT_MAX_BYTES, false);
        if (ready) return Promise.resolve({ value: { data: ready.data, fds: ready.fds }, done: false });
        return new Promise<IteratorResult<ReceivedMessage>>((resolve, reject) => {
          this.#addWaiter({ kind: 'iter', maxBytes: DEFAULT_MAX_BYTES, maxFds: MAX_FDS, resolve, reject, cleanup: null }, undefined);
        });
      },
      return: async (): Promise<IteratorResult<ReceivedMessage>> => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /**
   * The fast path of recv, recvFd and the iterator: with nobody waiting ahead,
   * take the buffered head message when no rule can refuse it (no flags, at
   * most maxBytes) and hand its fds over. Anything else is left to #deliver.
   */
  #takeReady(maxBytes: number, runc: boolean): RawMessage | undefined {
    if (this.#qhead >= this.#queue.length || this.#whead < this.#waiters.length || this.#closed) return undefined;
    const entry = this.#queue[this.#qhead]!;
    if (entry instanceof Error || entry.flags !== 0 || entry.data.length > maxBytes || entry.fds.length > MAX_FDS) return undefined;
    // runc's RecvFd: exactly one SCM_RIGHTS (and nothing else) with one fd.
    if (runc && (entry.fds.length !== 1 || entry.control !== 1)) return undefined;
    this.#shiftQueue();
    this.#handOver(entry.fds);
    return entry;
  }

  /**
   * Fds leave the library's keeping as they are handed out, unless a protocol
   * module holds what it receives (_keepOwned) and hands them over itself.
   */
  #handOver(fds: readonly number[]): void {
    if (!this.#keepOwned) disownAll(fds);
  }

  #addWaiter(w: Waiter, signal: AbortSignal | undefined): void {
    if (signal) {
      if (signal.aborted) {
        w.reject(abortError(signal));
        return;
      }
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(w, this.#whead);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          w.reject(abortError(signal));
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      w.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    this.#waiters.push(w);
    if (this.#closed) this.#settleWaitersAtEnd(closedError);
    else this.#pump();
  }

  /** True when someone wants messages. */
  #demand(): boolean {
    return this.#whead < this.#waiters.length || this.listenerCount('message') > 0;
  }

  /**
   * Deliver buffered messages to whoever asked, reading a new batch from the
   * kernel while there is demand and nothing buffered.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      let batches = 0;
      for (;;) {
        if (this.#closed) return;
        this.#deliver();
        if (this.#eof) {
          this.#settleWaitersAtEnd(eofError);
          break;
        }
        if (!this.#demand()) {
          // Nobody asked: stop watching (a drained socket would otherwise be
          // polled forever, its handle keeping the process alive).
          this.#readInterest = false;
          break;
        }
        if (this.#qhead < this.#queue.length) continue;
        if (batches++ >= BATCHES_PER_WAKE) {
          // Let the loop breathe; readiness brings us back.
          this.#readInterest = true;
          break;
        }
        const head = this.#whead < this.#waiters.length ? this.#waiters[this.#whead]! : null;
        // A batch reads ahead for later callers too, so the kernel must not cut
        // what they may accept: readBatch always has full fd room and, on
        // datagram sockets, reads at least the default size; the caller's own
        // limits are applied when a message is handed out (same codes, fds
        // closed). A stream loses nothing to a small read: the rest stays in
        // the kernel.
        const want = head ? head.maxBytes : DEFAULT_MAX_BYTES;
        const maxBytes = this.#stream ? want : Math.max(want, DEFAULT_MAX_BYTES);
        // A read that would only find the queue empty again is a wasted
        // syscall: readiness (level-triggered) says when there is more.
        if (this.#drained) {
          this.#readInterest = true;
          break;
        }
        const r = readBatch(this.#fd, BATCH, maxBytes, this.#connected, this.#queue);
        if (r === native.EAGAIN) {
          this.#readInterest = true;
          this.#drained = true;
          break;
        }
        if (r < 0) {
          this.#queue.push(systemError(r, 'recvmsg'));
          continue;
        }
        if (r === READ_DRAINED) {
          this.#readInterest = true;
          this.#drained = true;
        }
      }
    } finally {
      this.#pumping = false;
      this.#updatePoll();
    }
  }

  /** Hand buffered entries to waiters, then to 'message' listeners. */
  #deliver(): void {
    while (this.#qhead < this.#queue.length) {
      const entry = this.#queue[this.#qhead]!;
      const waiter = this.#whead < this.#waiters.length ? this.#waiters[this.#whead]! : null;
      if (!waiter && this.listenerCount('message') === 0) break;
      if (!(entry instanceof Error) && entry.flags & FLAG_EOF) {
        this.#shiftQueue();
        this.#setEof();
        return;
      }
      if (waiter) this.#shiftWaiter();
      if (entry instanceof Error) {
        this.#shiftQueue();
        if (waiter) waiter.reject(entry);
        else this.emit('error', entry);
        continue;
      }
      if (!waiter) {
        this.#shiftQueue();
        const m = toReceivedMessage(entry, MAX_MAX_BYTES, MAX_FDS, this.#stream);
        if (m instanceof Error) this.emit('error', m);
        else {
          this.#handOver(m.fds);
          this.emit('message', { data: m.data, fds: m.fds });
        }
        continue;
      }
      if (waiter.kind === 'fd') {
        this.#shiftQueue();
        const m = toReceivedFd(entry);
        if (m instanceof Error) waiter.reject(m);
        else {
          this.#handOver(entry.fds);
          waiter.resolve(m);
        }
        continue;
      }
      const m = toReceivedMessage(entry, waiter.maxBytes, waiter.maxFds, this.#stream);
      if (m instanceof Error) {
        this.#shiftQueue();
        waiter.reject(m);
        continue;
      }
      if ('rest' in m) this.#queue[this.#qhead] = m.rest;
      else this.#shiftQueue();
      this.#handOver(m.fds);
      const message: ReceivedMessage = { data: m.data, fds: m.fds };
      if (waiter.kind === 'recv') waiter.resolve(message);
      else waiter.resolve({ value: message, done: false });
    }
  }

  #shiftQueue(): void {
    this.#queue[this.#qhead++] = undefined as unknown as RawEntry;
    if (this.#qhead === this.#queue.length) {
      this.#queue.length = 0;
      this.#qhead = 0;
    }
  }

  #shiftWaiter(): void {
    const w = this.#waiters[this.#whead]!;
    this.#waiters[this.#whead++] = undefined as unknown as Waiter;
    w.cleanup?.();
    if (this.#whead === this.#waiters.length) {
      this.#waiters.length = 0;
      this.#whead = 0;
    }
  }

  #setEof(): void {
    if (this.#eof) return;
    this.#eof = true;
    this.#settleWaitersAtEnd(eofError);
    this.#readInterest = false;
    process.nextTick(() => this.emit('end'));
  }

  /** recv() gets null and iterators end; recvFd() rejects with the error. */
  #settleWaitersAtEnd(error: () => FdPassError): void {
    while (this.#whead < this.#waiters.length) {
      const w = this.#waiters[this.#whead]!;
      this.#shiftWaiter();
      if (w.kind === 'recv') w.resolve(null);
      else if (w.kind === 'iter') w.resolve({ value: undefined, done: true });
      else w.reject(error());
    }
  }

  #onPoll(events: number): void {
    if (this.#closed) return;
    if (events & POLLERR) {
      // Watching stopped on POLLERR; the real error (ECONNRESET...) comes
      // from the next sendmsg or recvmsg, which also clears it.
      events = (this.#wrhead < this.#writes.length ? POLLOUT : 0) | POLLIN;
    }
    if (events & POLLOUT) this.#flushWrites();
    if (events & POLLIN) {
      this.#drained = false;
      // Level-triggered: with no demand, stop watching rather than read.
      if (this.#demand()) this.#pump();
      else this.#readInterest = false;
    }
    this.#updatePoll();
  }

  #updatePoll(): void {
    if (this.#closed || !this.#io) return;
    let want = 0;
    if (this.#readInterest && !this.#eof) want |= POLLIN;
    if (this.#wrhead < this.#writes.length) want |= POLLOUT;
    this.#io.setInterest(want);
  }

  #failWrites(err: Error): void {
    const writes = this.#writes;
    const head = this.#wrhead;
    this.#writes = [];
    this.#wrhead = 0;
    for (let i = head; i < writes.length; i++) writes[i]!.reject(err);
    if (this.#endRequested) {
      const e = this.#endRequested;
      this.#endRequested = null;
      for (const w of e) w.reject(err);
    }
  }

  // ---- lifetime --------------------------------------------------------------

  /**
   * Close the socket now. Pending recv() resolve null, pending recvFd() and
   * sends reject with ERR_FDPASS_CLOSED, and fds of messages nobody received
   * are closed. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#teardown(true);
    this.#closePromise = RESOLVED;
    process.nextTick(() => this.emit('close'));
    return this.#closePromise;
  }

  /**
   * Stop using the socket and return its fd to the caller, who owns it from
   * now on (to hand it to another library). Messages already buffered are
   * dropped and their fds closed.
   */
  release(): number {
    if (this.#closed) throw closedError();
    const fd = this.#fd;
    this.#teardown(false);
    this.#closePromise = RESOLVED;
    process.nextTick(() => this.emit('close'));
    return fd;
  }

  #teardown(closeFd: boolean): void {
    this.#closed = true;
    this.#io?.close(closeFd);
    this.#io = null;
    this.#fd = -1;
    for (let i = this.#qhead; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      if (!(e instanceof Error)) discardFds((e as RawMessage).fds);
    }
    this.#queue = [];
    this.#qhead = 0;
    this.#settleWaitersAtEnd(closedError);
    this.#failWrites(closedError());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- synchronous receive (for recvFdSync) ----------------------------------

  /** @internal Take one runc message, blocking in poll(2) if need be. */
  _recvFdSync(): ReceivedFd {
    if (this.#closed) throw closedError();
    for (;;) {
      if (this.#qhead < this.#queue.length) {
        const entry = this.#queue[this.#qhead]!;
        if (!(entry instanceof Error) && entry.flags & FLAG_EOF) {
          this.#shiftQueue();
          this.#setEof();
        } else {
          this.#shiftQueue();
          if (entry instanceof Error) throw entry;
          const m = toReceivedFd(entry);
          if (m instanceof Error) throw m;
          this.#handOver(entry.fds);
          return m;
        }
      }
      if (this.#eof) throw eofError();
      this.#queue.push(readOneSync(this.#fd, this.#connected));
    }
  }

  /**
   * @internal For protocol modules that hold what they receive before
   * handing it out: received fds stay in the library's keeping (closed when
   * the worker that owns this socket ends) until the module disowns them.
   */
  _keepOwned(): void {
    this.#keepOwned = true;
  }

  /** @internal */
  _hasQueuedSends(): boolean {
    return this.#wrhead < this.#writes.length;
  }
}
