// usocket's API (USocket, UServer) on top of FdStream and FdServer, with the
// surface dbus-next 0.10 uses: new USocket({ path }) with '\0'-prefixed
// abstract names, write({ data, fds }), read(n), read(n, null), 'readable',
// 'connect', 'end', 'close', 'error', end(), destroy(). No native build of
// its own: packages/usocket-compat makes require('usocket') load this.
import { EventEmitter } from 'node:events';
import {
  encodeAddress,
  type AddressOptions,
  FdPassError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  Acceptor,
  type Accepted,
  listenSocket,
  unlinkIfSame,
  type FileId,
  native,
  sameUid,
  FdStream,
} from '../internal.js';
export { FdStream, type FdChunk, type FdWrite } from '../internal.js';

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
 * resume() stop and restart accepting; close(). It accepts straight into
 * USockets (the io core's Acceptor), building nothing to throw away.
 */
export class UServer extends EventEmitter {
  #acceptor: Acceptor | null = null;
  #path: string | undefined;
  #file: FileId | null = null;
  #starting = false;
  #paused = false;
  #closed = false;

  /** True once listening. */
  get listening(): boolean {
    return this.#acceptor !== null;
  }

  /** The listening fd, or undefined before listening. */
  get fd(): number | undefined {
    return this.#acceptor?.fd;
  }

  /** True while accepting is paused. */
  get paused(): boolean {
    return this.#paused;
  }

  listen(arg: string | UServerListenOptions, backlog?: number | (() => void), callback?: () => void): this {
    if (this.#acceptor || this.#starting) throw new FdPassError('ERR_SERVER_ALREADY_LISTEN', 'listen on already listened UServer');
    if (typeof backlog === 'function') {
      callback = backlog;
      backlog = undefined;
    }
    const options: UServerListenOptions = typeof arg === 'string' ? { path: arg } : arg;
    if (options === null || typeof options !== 'object') throw invalidArgType('path', 'a path string or an options object', arg);
    const depth = options.backlog ?? backlog ?? 16;
    if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 0 || depth > 65535) {
      throw outOfRange('backlog', 'an integer from 0 to 65535', depth);
    }
    const mode = options.mode ?? 0o600;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw outOfRange('mode', 'an integer from 0 to 0o7777', mode);
    }
    if (callback !== undefined && typeof callback !== 'function') throw invalidArgType('callback', 'a function', callback);
    // Bad arguments throw here, before anything changes.
    const address = encodeAddress(usocketAddress(options.path));
    if (callback !== undefined) this.once('listening', callback);
    this.#starting = true;
    // Listening happens on the next tick, as net.Server's does: errors come as 'error'.
    process.nextTick(() => {
      this.#starting = false;
      if (this.#closed) return;
      let listening;
      try {
        listening = listenSocket(address, native.SOCK_STREAM, depth, mode);
      } catch (err) {
        this.emit('error', err as Error);
        return;
      }
      this.#path = address.path;
      this.#file = listening.file;
      // Abstract names have no file permissions: our own uid only, as FdServer.
      this.#acceptor = new Acceptor(
        listening.fd,
        { allow: address.abstract !== undefined ? sameUid : undefined },
        {
          demand: () => !this.#paused,
          deliver: (conn) => this.#deliver(conn),
          error: (err) => this.emit('error', err),
        },
      );
      this.emit('listening');
      this.#pumpSoon();
    });
    return this;
  }

  #deliver(conn: Accepted): void {
    let usocket: USocket;
    try {
      usocket = new USocket({ fd: conn.fd });
    } catch (err) {
      native.close(conn.fd);
      this.emit('error', err as Error);
      return;
    }
    this.emit('connection', usocket);
  }

  /** Stop accepting (connections wait in the backlog). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pumpSoon();
  }

  // After the caller's current code, as net.Server does: its listeners are in place.
  #pumpSoon(): void {
    queueMicrotask(() => this.#acceptor?.pump());
  }

  /** Stop listening and unlink the socket file; 'close' follows. */
  close(callback?: () => void): void {
    if (callback !== undefined) this.once('close', callback);
    if (this.#closed) return;
    this.#closed = true;
    const acceptor = this.#acceptor;
    this.#acceptor = null;
    acceptor?.close();
    if (this.#path !== undefined && this.#file) unlinkIfSame(this.#path, this.#file);
    process.nextTick(() => this.emit('close'));
  }
}
