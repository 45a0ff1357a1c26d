// usocket's API (USocket, UServer) on top of FdStream and FdServer, with the
// surface dbus-next 0.10 uses: new USocket({ path }) with '\0'-prefixed
// abstract names, write({ data, fds }), read(n), read(n, null), 'readable',
// 'connect', 'end', 'close', 'error', end(), destroy(). No native build of
// its own: packages/usocket-compat makes require('usocket') load this.
import { EventEmitter } from 'node:events';
import type { AddressOptions } from '../address.js';
import { FdPassError, invalidArgType, invalidArgValue, outOfRange } from '../errors.js';
import { native } from '../native.js';
import { FdServer } from '../server.js';
import type { FdSocket } from '../socket.js';
import { FdStream } from '../stream/index.js';

export { FdStream } from '../stream/index.js';
export type { FdChunk, FdWrite } from '../stream/index.js';

/** Options of `new USocket(options)`: usocket's, plus FdStream's high-water marks. */
export interface USocketOptions {
  /** Connect to this path; a leading '\0' makes it an abstract name. */
  path?: string;
  /** Adopt this connected AF_UNIX stream socket fd. */
  fd?: number;
  /** Keep the writable side open after the peer ended (default false). */
  allowHalfOpen?: boolean;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
}

/** usocket's '\0name' convention for abstract names, as fdpass's address options. */
export function usocketAddress(path: unknown): Omit<AddressOptions, 'type'> {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path.startsWith('\0')) return { abstract: path.slice(1) };
  return { path };
}

/**
 * usocket's USocket: an FdStream that connects on construction when given a
 * path, or adopts `fd`. Emits 'connect' once connected (like net.Socket;
 * dbus-next listens for both 'connect' and usocket's old 'connected', so only
 * one of them may be emitted).
 */
export class USocket extends FdStream {
  /** Set by dbus-next after construction: whether to negotiate UNIX_FD. */
  supportsUnixFd?: boolean;

  constructor(options: USocketOptions = {}, callback?: () => void) {
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const { path, fd, ...rest } = options;
    if (path !== undefined && fd !== undefined) throw invalidArgValue('options', 'must have path or fd, not both', options);
    super(fd === undefined ? rest : { ...rest, fd });
    if (path !== undefined) this.connect(path, callback);
    else if (callback !== undefined) throw invalidArgValue('callback', 'needs options.path', callback);
  }

  /** Connect to a path ('\0name': an abstract name), as usocket's connect(). */
  override connect(arg: string | { path: string } | Parameters<FdStream['connect']>[0], callback?: () => void): this {
    if (typeof arg === 'string') return super.connect(usocketAddress(arg), callback);
    if (arg !== null && typeof arg === 'object' && typeof arg.path === 'string' && arg.path.startsWith('\0')) {
      return super.connect(usocketAddress(arg.path), callback);
    }
    return super.connect(arg, callback);
  }
}

/** Options of UServer.listen: usocket's, plus the socket file's mode. */
export interface UServerListenOptions {
  /** A path; a leading '\0' makes it an abstract name. */
  path: string;
  backlog?: number;
  /** Mode of the socket file, set before listen(2); default 0o600. */
  mode?: number;
}

/**
 * usocket's UServer: listen(path | { path, backlog }, backlog?, callback?),
 * then 'listening', 'connection' (a USocket), 'error', 'close'; pause() and
 * resume() stop and restart accepting; close().
 */
export class UServer extends EventEmitter {
  #server: FdServer | null = null;
  #starting = false;
  #paused = false;
  #closed = false;

  /** True once listening. */
  get listening(): boolean {
    return this.#server !== null && !this.#server.closed;
  }

  /** The listening fd, or undefined before listening. */
  get fd(): number | undefined {
    return this.#server?.fd;
  }

  /** True while accepting is paused. */
  get paused(): boolean {
    return this.#paused;
  }

  listen(arg: string | UServerListenOptions, backlog?: number | (() => void), callback?: () => void): this {
    if (this.#server || this.#starting) throw new FdPassError('ERR_SERVER_ALREADY_LISTEN', 'listen on already listened UServer');
    if (typeof backlog === 'function') {
      callback = backlog;
      backlog = undefined;
    }
    const options: UServerListenOptions = typeof arg === 'string' ? { path: arg } : arg;
    if (options === null || typeof options !== 'object') throw invalidArgType('path', 'a path string or an options object', arg);
    const depth = options.backlog ?? backlog ?? 16;
    if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 0) throw outOfRange('backlog', 'an integer >= 0', depth);
    if (callback !== undefined && typeof callback !== 'function') throw invalidArgType('callback', 'a function', callback);
    const address = usocketAddress(options.path);
    // Bad arguments throw here, before anything changes.
    const listening = FdServer.listen({
      ...address,
      type: 'stream',
      backlog: depth,
      ...(options.mode === undefined ? {} : { mode: options.mode }),
    });
    if (callback !== undefined) this.once('listening', callback);
    this.#starting = true;
    listening.then(
      (server) => {
        this.#starting = false;
        if (this.#closed) {
          void server.close();
          return;
        }
        this.#server = server;
        server.on('error', (err) => this.emit('error', err));
        this.emit('listening');
        if (!this.#paused) this.#accept(true);
      },
      (err: Error) => {
        this.#starting = false;
        this.emit('error', err);
      },
    );
    return this;
  }

  #onConnection = (socket: FdSocket): void => {
    const fd = socket.release();
    let usocket: USocket;
    try {
      usocket = new USocket({ fd });
    } catch (err) {
      native.close(fd);
      this.emit('error', err as Error);
      return;
    }
    this.emit('connection', usocket);
  };

  #accept(on: boolean): void {
    const server = this.#server;
    if (!server) return;
    if (on) {
      if (server.listenerCount('connection') === 0) server.on('connection', this.#onConnection);
    } else server.off('connection', this.#onConnection);
  }

  /** Stop accepting (connections wait in the backlog). */
  pause(): void {
    this.#paused = true;
    this.#accept(false);
  }

  resume(): void {
    this.#paused = false;
    this.#accept(true);
  }

  /** Stop listening and unlink the socket file; 'close' follows. */
  close(callback?: () => void): void {
    if (callback !== undefined) this.once('close', callback);
    if (this.#closed) return;
    this.#closed = true;
    const server = this.#server;
    this.#server = null;
    if (!server) {
      process.nextTick(() => this.emit('close'));
      return;
    }
    server.close().then(
      () => this.emit('close'),
      (err: Error) => this.emit('error', err),
    );
  }
}
