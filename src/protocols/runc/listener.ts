// The listener shared by runc's three sockets: it accepts connections, reads
// one message from each with a protocol function, and hands the results out
// through an async iterator. A bad connection costs only itself: its fds are
// closed, an 'error' event reports it (when someone listens), and the
// listener goes on.
import { EventEmitter } from 'node:events';
import {
  ErrorCodes,
  FdPassError,
  checkSignal,
  invalidArgType,
  outOfRange,
  type Kept,
  WaitQueue,
  FdServer,
  type FdSocket,
  type PeerCredentials,
} from '../internal.js';

/** Options of listenConsoleSocket, listenSeccompAgent and listenPidfdSocket. */
export interface RuncListenOptions {
  /** Mode of the socket file, set before listen(2); default 0o600. */
  mode?: number;
  /** Decides from the peer's credentials (SO_PEERCRED) whether to serve a connection. */
  allow?: (peer: PeerCredentials) => boolean;
  /**
   * Milliseconds a connection may take to deliver its message; default
   * 10000. A peer that is slower gets ERR_FDPASS_TIMEOUT and is dropped.
   */
  timeout?: number;
  /** listen(2) backlog; default 511. */
  backlog?: number;
}

export interface RuncListenerEvents {
  /**
   * A connection that did not deliver a valid message (its fds are closed),
   * or a failure to accept. `peer` is null when no connection is involved.
   * Without a listener, such errors are dropped: they never throw.
   */
  error: [error: FdPassError, peer: PeerCredentials | null];
  close: [];
}

/**
 * @internal
 * Reads one message from a connection into a value whose fds are still in
 * the library's care (they are closed with the listener unless handed out);
 * throws a coded error otherwise, having closed every fd that arrived.
 */
export type ReadMessage<T> = (sock: FdSocket, peer: PeerCredentials, signal: AbortSignal) => Promise<Kept<T>>;

interface Waiter<T> {
  resolve: (value: T | null) => void;
  reject: (err: Error) => void;
}

// RuncListener's constructor is private: its static block hands its factory
// to listenRunc, the one way src/protocols/runc's protocol modules make one.
let listen: <T>(path: string, options: RuncListenOptions | undefined, read: ReadMessage<T>) => Promise<RuncListener<T>>;

/**
 * @internal A RuncListener on a new socket file at `path` that reads each
 * connection's message with `read` (listenConsoleSocket, listenSeccompAgent
 * and listenPidfdSocket).
 */
export function listenRunc<T>(path: string, options: RuncListenOptions | undefined, read: ReadMessage<T>): Promise<RuncListener<T>> {
  return listen(path, options, read);
}

const DEFAULT_TIMEOUT = 10_000;

function toFdPassError(err: unknown): FdPassError {
  if (err instanceof FdPassError) return err;
  const e = err as { code?: unknown; message?: unknown };
  return new FdPassError(
    typeof e?.code === 'string' ? e.code : ErrorCodes.INTERNAL,
    typeof e?.message === 'string' ? e.message : String(err),
    { cause: err },
  );
}

/**
 * A listening socket that yields one value per connection. Values hold fds
 * that become yours once you receive them; values nobody took are closed by
 * close().
 */
export class RuncListener<T> extends EventEmitter<RuncListenerEvents> implements AsyncIterable<T> {
  readonly #server: FdServer;
  readonly #read: ReadMessage<T>;
  readonly #timeout: number;
  #queue: Kept<T>[] = [];
  readonly #waiters = new WaitQueue<Waiter<T>>();
  #inFlight = new Map<AbortController, Promise<void>>();
  #closed = false;
  #closing: Promise<void> | null = null;

  static {
    listen = (path, options, read) => RuncListener.#listen(path, options, read);
  }

  /** Use listenConsoleSocket, listenSeccompAgent or listenPidfdSocket. */
  private constructor(server: FdServer, read: ReadMessage<T>, timeout: number) {
    super();
    this.#server = server;
    this.#read = read;
    this.#timeout = timeout;
    server.on('error', (err) => this.#report(toFdPassError(err), null));
    server.on('connection', (sock) => {
      const controller = new AbortController();
      const serving = this.#serve(sock, controller).finally(() => this.#inFlight.delete(controller));
      this.#inFlight.set(controller, serving);
    });
  }

  static async #listen<T>(path: string, options: RuncListenOptions | undefined, read: ReadMessage<T>): Promise<RuncListener<T>> {
    if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw invalidArgType('options', 'of type object', options);
    }
    const o = options ?? {};
    const timeout = o.timeout ?? DEFAULT_TIMEOUT;
    if (typeof timeout !== 'number') throw invalidArgType('options.timeout', 'of type number', timeout);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 0x7fffffff) {
      throw outOfRange('options.timeout', 'an integer of milliseconds >= 1', timeout);
    }
    const server = await FdServer.listen({
      path,
      type: 'stream',
      ...(o.mode === undefined ? {} : { mode: o.mode }),
      ...(o.allow === undefined ? {} : { allow: o.allow }),
      ...(o.backlog === undefined ? {} : { backlog: o.backlog }),
    });
    return new RuncListener(server, read, timeout);
  }

  /** The absolute path of the socket file. */
  get path(): string {
    return this.#server.path as string;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #serve(sock: FdSocket, controller: AbortController): Promise<void> {
    let peer: PeerCredentials | null = null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#timeout);
    try {
      peer = sock.peer;
      // Until a value is handed out, its fds stay in the library's care: the
      // end of the worker that runs this listener closes them.
      const value = await this.#read(sock, peer, controller.signal);
      if (this.#closed) value.discard();
      else this.#push(value);
    } catch (err) {
      if (timedOut) {
        this.#report(new FdPassError(ErrorCodes.TIMEOUT, `the peer sent no complete message within ${this.#timeout} ms`), peer);
      } else if (!this.#closed) {
        this.#report(toFdPassError(err), peer);
      }
    } finally {
      clearTimeout(timer);
      await sock.close();
    }
  }

  #report(err: FdPassError, peer: PeerCredentials | null): void {
    if (this.listenerCount('error') > 0) this.emit('error', err, peer);
  }

  #push(value: Kept<T>): void {
    const w = this.#waiters.shift();
    if (w) w.resolve(value.handOut());
    else this.#queue.push(value);
  }

  /**
   * The next value, or null once the listener is closed. An aborted `signal`
   * rejects with an AbortError; the value that would have come goes to the
   * next caller.
   */
  next(options?: { signal?: AbortSignal }): Promise<T | null> {
    let signal: AbortSignal | undefined;
    try {
      signal = checkSignal(options?.signal);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<T | null>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject };
      if (signal?.aborted || (this.#queue.length === 0 && !this.#closed)) {
        this.#waiters.add(waiter, signal);
        return;
      }
      const value = this.#queue.shift();
      resolve(value ? value.handOut() : null);
    });
  }

  /** Values as they arrive, until the listener closes. Leaving the loop does not close it. */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    const iterator: AsyncIterableIterator<T> = {
      next: async (): Promise<IteratorResult<T>> => {
        const value = await this.next();
        return value === null ? { value: undefined, done: true } : { value, done: false };
      },
      return: async (): Promise<IteratorResult<T>> => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /**
   * Stop: close the socket and unlink its file, drop connections still being
   * read (their fds are closed), close the fds of values nobody took, end the
   * iterators. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      await this.#server.close();
      for (const c of this.#inFlight.keys()) c.abort();
      await Promise.all(this.#inFlight.values());
      const queued = this.#queue;
      this.#queue = [];
      for (const v of queued) v.discard();
      this.#waiters.drain((w) => w.resolve(null));
      process.nextTick(() => this.emit('close'));
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
