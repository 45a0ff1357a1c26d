// FdSocket: a connected AF_UNIX socket on the event loop that sends and
// receives messages with fds. Reads happen only on demand (a pending recv, an
// iterator, a 'message' listener) and at most one batch is buffered; fds in
// buffered messages belong to the socket and are closed with it. It stands
// on the io core: a Pump (which watches the fd and reads on demand), a
// SendQueue, a WaitQueue and readBatch.
import { EventEmitter } from 'node:events';
import { SocketType, socketTypeName, socketTypeNumber } from '../base/address.js';
import { FdPassError, checkSignal, closedError, systemError } from '../base/errors.js';
import { FdLike, toFd, toFdArray } from '../base/fds.js';
import { Kept, discardFds, disown, disownAll } from '../io/owned.js';
import { SendQueue } from '../io/send.js';
import { adoptSocket, bindSocket, connectSocket, peerCredentials, socketPair, type PeerCredentials } from '../io/sockops.js';
import { ENDED, MORE, Pump } from '../io/pump.js';
import { WaitQueue } from '../io/waiters.js';
import { native } from '../base/native.js';
import { type Pidfd, adoptPidfd, peerPidfd } from './pidfd.js';
import {
  BATCH,
  DEFAULT_MAX_BYTES,
  FLAG_EOF,
  MAX_FDS,
  MAX_NAME_LEN,
  RawEntry,
  RawMessage,
  discardPidfd,
  eofError,
  isPlainMessage,
  isRuncFd,
  readBatch,
  readOneSync,
  toReceivedFd,
  toReceivedMessage,
} from '../io/recv.js';

export type { PeerCredentials } from '../io/sockops.js';

import {
  checkData,
  checkLimit,
  checkOptions,
  emptyDataError,
  encodeName,
  sendAfterEnd,
  socketArgs,
  type SocketArgs,
  type Waiter,
  type BindOptions,
  type ConnectOptions,
  type FdSocketEvents,
  type ReceivedFd,
  type ReceivedMessage,
  type RecvFdOptions,
  type RecvOptions,
} from './message.js';

export { encodeName, emptyDataError } from './message.js';
export type { BindOptions, ConnectOptions, FdSocketEvents, ReceivedFd, ReceivedMessage, RecvFdOptions, RecvOptions } from './message.js';

const MAX_MAX_BYTES = 16 << 20;
const RESOLVED: Promise<void> = Promise.resolve();
const SHUT_WR = 1;

// The fd of a sendFd on its way into sendmsg (copied if the send is queued).
const oneFd = new Int32Array(1);

// What the library's own modules may do with an FdSocket beyond its public API (create one on an fd,
// receive into Kept values, recvFdSync): FdSocket's static block, which sees its #private members, fills
// this in; the functions below are the way in (internal.ts passes some on). None is in the package.
let privileged: {
  create(fd: number, type: number, peer?: PeerCredentials, passPidfd?: boolean): FdSocket;
  recvKept(sock: FdSocket, options?: RecvOptions): Promise<Kept<ReceivedMessage> | null>;
  recvFdKept(sock: FdSocket, options?: RecvFdOptions): Promise<Kept<ReceivedFd>>;
  recvFdSync(sock: FdSocket): ReceivedFd;
  hasQueuedSends(sock: FdSocket): boolean;
};

/** @internal An FdSocket on `fd`, a non-blocking connected socket of `type` (FdServer's connections). */
export function createSocket(fd: number, type: number, peer?: PeerCredentials, passPidfd = false): FdSocket {
  return privileged.create(fd, type, peer, passPidfd);
}

/** @internal sock.recv(), the message's fds still in the library's care until handed out. */
export function recvKept(sock: FdSocket, options?: RecvOptions): Promise<Kept<ReceivedMessage> | null> {
  return privileged.recvKept(sock, options);
}

/** @internal sock.recvFd(), the fd still in the library's care until handed out. */
export function recvFdKept(sock: FdSocket, options?: RecvFdOptions): Promise<Kept<ReceivedFd>> {
  return privileged.recvFdKept(sock, options);
}

/** @internal recvFdSync on an FdSocket: its read-ahead first, then the kernel's queue. */
export function socketRecvFdSync(sock: FdSocket): ReceivedFd {
  return privileged.recvFdSync(sock);
}

/** @internal Whether asynchronous sends wait in the socket's queue (a *Sync call would overtake them). */
export function hasQueuedSends(sock: FdSocket): boolean {
  return privileged.hasQueuedSends(sock);
}

/**
 * A connected AF_UNIX socket (stream, seqpacket or dgram) that carries fds.
 *
 * Events: 'message' (a ReceivedMessage: its fds are the listener's to close),
 * 'end' (the peer closed), 'error', 'close'.
 */
export class FdSocket extends EventEmitter<FdSocketEvents> {
  /** Socket type: 'stream', 'seqpacket' or 'dgram'. */
  readonly type: SocketType;
  readonly #reader: Pump;
  readonly #sends: SendQueue;
  #peer: PeerCredentials | undefined;
  #closed = false;
  #eof = false;
  #ended = false;
  #endRequested = false;
  #closePromise: Promise<void> | null = null;
  // Handing messages out (listeners run): a receive called from one is served by this pass.
  #delivering = false;
  // Messages read from the kernel and not yet delivered (one batch at most).
  #queue: RawEntry[] = [];
  #qhead = 0;
  readonly #waiters = new WaitQueue<Waiter>();
  readonly #stream: boolean;
  readonly #connected: boolean;
  // SO_PASSPIDFD was turned on by us: each message's pidfd is handed out.
  readonly #passPidfd: boolean;

  static {
    privileged = {
      create: (fd, type, peer, passPidfd) => new FdSocket(fd, type, peer, passPidfd),
      recvKept: (sock, options) => sock.#recv(options, true).then((m) => (m ? new Kept(m, m.fds) : null)),
      recvFdKept: (sock, options) => sock.#recvFd(options, true).then((m) => new Kept(m, [m.fd])),
      recvFdSync: (sock) => sock.#recvFdSync(),
      hasQueuedSends: (sock) => sock.#sends.length > 0,
    };
  }

  /**
   * Use FdSocket.connect, FdSocket.pair, FdSocket.fromFd or FdServer. The
   * FdSocket takes `fd` (a non-blocking socket of `type`) as it is.
   */
  private constructor(fd: number, type: number, peer?: PeerCredentials, passPidfd = false) {
    super();
    this.type = socketTypeName(type);
    this.#passPidfd = passPidfd;
    this.#stream = type === native.SOCK_STREAM;
    this.#connected = type !== native.SOCK_DGRAM;
    this.#peer = peer;
    this.#sends = new SendQueue(() => this.#reader.update());
    this.#reader = new Pump(fd, {
      demand: () => !this.#closed && this.#demand(),
      step: () => this.#step(),
      readFailed: (errno) => {
        this.#queue.push(systemError(errno, 'recvmsg'));
        this.#deliver();
      },
      failed: (err) => this.#failed(err),
      writePending: () => this.#sends.length > 0,
      writable: () => this.#sends.flush(this.#reader.fd),
    });
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'message') queueMicrotask(() => this.#pump());
    });
  }

  /**
   * Connect to a listening socket by path or abstract name. Bad arguments
   * throw at once; connection errors (ENOENT, ECONNREFUSED...) reject.
   */
  static connect(arg: string | ConnectOptions): Promise<FdSocket> {
    return FdSocket.#connect(socketArgs(arg, 'connect'));
  }

  static async #connect(a: SocketArgs): Promise<FdSocket> {
    return new FdSocket(await connectSocket(a.address, a.type, a.signal, a.acceptFds, a.passPidfd), a.type, undefined, a.passPidfd);
  }

  /** A connected pair of sockets (socketpair(2)). */
  static pair(type?: SocketType): [FdSocket, FdSocket] {
    const t = socketTypeNumber(type);
    const [a, b] = socketPair(t);
    return [new FdSocket(a, t), new FdSocket(b, t)];
  }

  /**
   * Adopt a socket fd (inherited, or received from a peer). The FdSocket owns
   * it from now on; it is made non-blocking and close-on-exec.
   */
  static fromFd(fd: number): FdSocket {
    const type = adoptSocket(fd, { listening: false, hint: 'use FdServer.fromFd' });
    return new FdSocket(fd, type);
  }

  /**
   * A datagram socket bound to a path or abstract name, receiving from any
   * sender (the receiving side of `notify`-like protocols).
   */
  static bindDatagram(arg: string | BindOptions): FdSocket {
    const a = socketArgs(arg, 'bind');
    return new FdSocket(bindSocket(a.address, a.type, a.acceptFds, a.passPidfd), a.type, undefined, a.passPidfd);
  }

  /** The socket's fd, or -1 once closed. */
  get fd(): number {
    return this.#reader.fd;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Credentials of the peer (SO_PEERCRED) as of connect() or socketpair(). */
  get peer(): PeerCredentials {
    if (!this.#peer) {
      if (this.#closed) throw closedError();
      this.#peer = peerCredentials(this.#reader.fd);
    }
    return this.#peer;
  }

  /**
   * A Pidfd of the peer process (SO_PEERPIDFD, Linux >= 6.5; ENOPROTOOPT on
   * older kernels): the process that connected, or called socketpair(),
   * named in a way that survives pid reuse. Yours to close.
   */
  peerPidfd(): Pidfd {
    if (this.#closed) throw closedError();
    return peerPidfd(this.#reader.fd);
  }

  /** Sends queued in user space, waiting for room in the kernel (backpressure). */
  get pendingSends(): number {
    return this.#sends.length;
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
    return this.#send(bytes, oneFd);
  }

  #send(data: Uint8Array, fds: Int32Array | null): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#endRequested) return Promise.reject(sendAfterEnd());
    // The queue copies the scratch oneFd if the send has to wait.
    return this.#sends.send(this.#reader.fd, data, fds, fds === oneFd);
  }

  /**
   * Half-close: once queued sends are out, shutdown(SHUT_WR). The peer sees
   * end of file; this side can still receive.
   */
  end(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    this.#endRequested = true;
    return new Promise<void>((resolve, reject) => {
      this.#sends.whenDrained((err) => {
        if (err) return reject(err);
        if (this.#ended) return resolve();
        this.#ended = true;
        const r = native.shutdown(this.#reader.fd, SHUT_WR);
        if (r < 0) reject(systemError(r, 'shutdown'));
        else resolve();
      });
    });
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
      if (ready) return Promise.resolve(this.#message(ready.data, ready.fds, ready));
    }
    return this.#recv(options, false);
  }

  #recv(options: RecvOptions | undefined, keep: boolean): Promise<ReceivedMessage | null> {
    const o = checkOptions(options);
    const signal = checkSignal(o.signal);
    const maxBytes = checkLimit(o.maxBytes, 'options.maxBytes', DEFAULT_MAX_BYTES, MAX_MAX_BYTES, 1);
    const maxFds = checkLimit(o.maxFds, 'options.maxFds', MAX_FDS, MAX_FDS, 0);
    return new Promise<ReceivedMessage | null>((resolve, reject) => {
      this.#addWaiter({ kind: 'recv', maxBytes, maxFds, keep, resolve, reject }, signal);
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
    return this.#recvFd(options, false);
  }

  #recvFd(options: RecvFdOptions | undefined, keep: boolean): Promise<ReceivedFd> {
    const o = checkOptions(options);
    const signal = checkSignal(o.signal);
    return new Promise<ReceivedFd>((resolve, reject) => {
      this.#addWaiter({ kind: 'fd', maxBytes: MAX_NAME_LEN, maxFds: MAX_FDS, keep, resolve, reject }, signal);
    });
  }

  /** Iterate over messages until end of file; each message's fds are yours. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    const iterator: AsyncIterableIterator<ReceivedMessage> = {
      next: () => {
        const ready = this.#takeReady(DEFAULT_MAX_BYTES, false);
        if (ready) return Promise.resolve({ value: this.#message(ready.data, ready.fds, ready), done: false });
        return new Promise<IteratorResult<ReceivedMessage>>((resolve, reject) => {
          this.#addWaiter({ kind: 'iter', maxBytes: DEFAULT_MAX_BYTES, maxFds: MAX_FDS, keep: false, resolve, reject }, undefined);
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
    if (this.#qhead >= this.#queue.length || this.#waiters.length > 0 || this.#closed) return undefined;
    const entry = this.#queue[this.#qhead]!;
    if (entry instanceof Error) return undefined;
    if (
      runc
        ? !isRuncFd(entry.data.length, entry.fds.length, entry.flags, entry.control)
        : !isPlainMessage(entry.data.length, entry.fds.length, entry.flags, maxBytes)
    )
      return undefined;
    this.#shiftQueue();
    disownAll(entry.fds);
    if (runc) discardPidfd(entry); // ReceivedFd names no sender
    return entry;
  }

  /** A message handed out; with passPidfd, its pidfd adopted by a Pidfd (null if none came, or adopting failed: then closed). */
  #message(data: Buffer, fds: number[], entry: RawMessage): ReceivedMessage {
    if (!this.#passPidfd) return { data, fds };
    const fd = entry.pidfd;
    entry.pidfd = -1;
    if (fd < 0) return { data, fds, pidfd: null };
    disown(fd);
    let pidfd: Pidfd | null = null;
    try {
      pidfd = adoptPidfd(fd);
    } catch {
      // closed by adoptPidfd
    }
    return { data, fds, pidfd };
  }

  #addWaiter(w: Waiter, signal: AbortSignal | undefined): void {
    if (!this.#waiters.add(w, signal)) return;
    if (this.#closed) this.#settleWaitersAtEnd(closedError);
    else this.#pump();
  }

  /** True when someone wants messages. */
  #demand(): boolean {
    return this.#waiters.length > 0 || this.listenerCount('message') > 0;
  }

  /**
   * Deliver buffered messages to whoever asked; the pump reads a new batch
   * from the kernel while there is demand and nothing buffered.
   */
  #pump(): void {
    if (this.#closed || this.#delivering) return;
    this.#deliver();
    if (this.#eof) this.#settleWaitersAtEnd(eofError);
    else this.#reader.pump();
  }

  /** The pump's step: read a batch and hand it out. */
  #step(): number {
    this.#deliver();
    if (this.#eof) return ENDED;
    if (this.#qhead < this.#queue.length) return MORE;
    const head = this.#waiters.peek();
    // A batch reads ahead for later callers too, so the kernel must not cut
    // what they may accept: readBatch always has full fd room and, on
    // datagram sockets, reads at least the default size; the caller's own
    // limits are applied when a message is handed out (same codes, fds
    // closed). A stream loses nothing to a small read: the rest stays in
    // the kernel.
    const want = head ? head.maxBytes : DEFAULT_MAX_BYTES;
    const maxBytes = this.#stream ? want : Math.max(want, DEFAULT_MAX_BYTES);
    const r = readBatch(this.#reader.fd, BATCH, maxBytes, this.#connected, this.#queue, undefined, this.#passPidfd);
    if (r < 0) return r;
    this.#deliver();
    return this.#eof ? ENDED : r;
  }

  /** Watching failed: nothing would wake the waiters, so they get the error (a later receive tries again). */
  #failed(err: Error): void {
    this.#waiters.drain((w) => w.reject(err));
    if (this.listenerCount('message') > 0) this.emit('error', err);
  }

  /** Hand buffered entries to waiters, then to 'message' listeners. */
  #deliver(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      this.#deliverAll();
    } finally {
      this.#delivering = false;
    }
  }

  #deliverAll(): void {
    while (this.#qhead < this.#queue.length) {
      const entry = this.#queue[this.#qhead]!;
      const waiter = this.#waiters.peek() ?? null;
      if (!waiter && this.listenerCount('message') === 0) break;
      if (!(entry instanceof Error) && entry.flags & FLAG_EOF) {
        this.#shiftQueue();
        this.#setEof();
        return;
      }
      if (waiter) this.#waiters.shift();
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
          disownAll(m.fds);
          this.emit('message', this.#message(m.data, m.fds, entry));
        }
        continue;
      }
      if (waiter.kind === 'fd') {
        this.#shiftQueue();
        const m = toReceivedFd(entry);
        if (m instanceof Error) waiter.reject(m);
        else {
          discardPidfd(entry); // ReceivedFd names no sender
          if (!waiter.keep) disownAll(entry.fds);
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
      if (!waiter.keep) disownAll(m.fds);
      // A protocol module's Kept value carries fds only: it gets no pidfd.
      if (waiter.keep) discardPidfd(entry);
      const message = this.#message(m.data, m.fds, entry);
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

  #setEof(): void {
    if (this.#eof) return;
    this.#eof = true;
    this.#settleWaitersAtEnd(eofError);
    this.#reader.end();
    process.nextTick(() => this.emit('end'));
  }

  /** recv() gets null and iterators end; recvFd() rejects with the error. */
  #settleWaitersAtEnd(error: () => FdPassError): void {
    this.#waiters.drain((w) => {
      if (w.kind === 'recv') w.resolve(null);
      else if (w.kind === 'iter') w.resolve({ value: undefined, done: true });
      else w.reject(error());
    });
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
    const fd = this.#reader.fd;
    this.#teardown(false);
    this.#closePromise = RESOLVED;
    process.nextTick(() => this.emit('close'));
    return fd;
  }

  #teardown(closeFd: boolean): void {
    this.#closed = true;
    if (closeFd) this.#reader.close();
    else this.#reader.release();
    for (let i = this.#qhead; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      if (!(e instanceof Error)) {
        discardFds(e.fds);
        discardPidfd(e);
      }
    }
    this.#queue = [];
    this.#qhead = 0;
    this.#settleWaitersAtEnd(closedError);
    this.#sends.close(closedError());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Take one runc message, blocking in poll(2) if need be (recvFdSync). */
  #recvFdSync(): ReceivedFd {
    if (this.#closed) throw closedError();
    for (;;) {
      if (this.#qhead < this.#queue.length) {
        const entry = this.#queue[this.#qhead]!;
        this.#shiftQueue();
        if (!(entry instanceof Error) && entry.flags & FLAG_EOF) this.#setEof();
        else {
          if (entry instanceof Error) throw entry;
          const m = toReceivedFd(entry);
          if (m instanceof Error) throw m;
          discardPidfd(entry);
          disownAll(entry.fds);
          return m;
        }
      }
      if (this.#eof) throw eofError();
      this.#queue.push(readOneSync(this.#reader.fd, this.#connected));
    }
  }
}
