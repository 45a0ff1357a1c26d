// usocket's API (USocket, UServer) on top of FdStream and FdServer's io
// core, behaving as usocket 1.x does where its own test suite and dbus-next
// look: new USocket(path | { path | fd }), connect(path | { path | fd }, cb)
// with 'connected', write({ data, fds, callback }), read(n), read(n, count),
// unshift(chunk, fds), 'readable', 'end', 'close', 'error', end(), destroy();
// a bad fd given to connect({ fd }) is an 'error' event, after which the
// USocket may connect again. No native build of its own:
// packages/usocket-compat makes require('usocket') load this.
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
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
  native,
  sameUid,
  FdStream,
  streamInternals,
  type FdChunk,
} from '../internal.js';
export { FdStream, type FdChunk, type FdWrite } from '../internal.js';

const { EBADF } = constants.errno;

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

/** Where `USocket.connect` goes: a path, or `{ path }`, or `{ fd }` to adopt. */
export type USocketConnectTarget = string | { path: string } | { fd: number };

/** usocket's '\0name' convention for abstract names, as fdpass's address options. */
export function usocketAddress(path: unknown): Omit<AddressOptions, 'type'> {
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
  if (path.startsWith('\0')) return { abstract: path.slice(1) };
  return { path };
}

/**
 * usocket's USocket: an FdStream that connects on construction when given a
 * path, or adopts `fd`. Emits 'connected' once a connect() succeeds, as
 * usocket does (not net.Socket's 'connect': dbus-next listens for both, so
 * only one of them may come).
 */
export class USocket extends FdStream {
  /** Set by dbus-next after construction: whether to negotiate UNIX_FD. */
  supportsUnixFd?: boolean;

  constructor(options: string | USocketOptions = {}, callback?: () => void) {
    // usocket takes a bare path too.
    if (typeof options === 'string') options = { path: options };
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'a path string or an object', options);
    const { path, fd, ...rest } = options;
    if (path !== undefined && fd !== undefined) throw invalidArgValue('options', 'must have path or fd, not both', options);
    super(fd === undefined ? rest : { ...rest, fd });
    if (path !== undefined) this.connect(path, callback);
    else if (callback !== undefined) throw invalidArgValue('callback', 'needs options.path', callback);
  }

  /**
   * Connect to a path ('\0name': an abstract name), or adopt a connected
   * AF_UNIX stream socket fd with `{ fd }` (the USocket owns it from now on;
   * no 'connected' event, as in usocket). An fd that cannot be adopted (-1,
   * closed, no AF_UNIX stream socket) is reported as 'error' then 'close', as
   * usocket does, and the USocket stays unconnected: connect() may be called
   * again. `callback` listens for 'connected'.
   */
  override connect(arg: USocketConnectTarget | Parameters<FdStream['connect']>[0], callback?: () => void): this {
    if (callback !== undefined && typeof callback !== 'function') throw invalidArgType('callback', 'a function', callback);
    if (arg !== null && typeof arg === 'object' && 'fd' in arg && typeof arg.fd === 'number') {
      this.#adopt(arg.fd, callback);
      return this;
    }
    let where = arg as Parameters<FdStream['connect']>[0];
    if (typeof arg === 'string') where = usocketAddress(arg);
    else if (arg !== null && typeof arg === 'object' && 'path' in arg && typeof arg.path === 'string' && arg.path.startsWith('\0')) {
      where = usocketAddress(arg.path);
    }
    super.connect(where);
    // After super.connect(), which throws on bad arguments before anything changes.
    if (callback) this.once('connected', callback);
    return this;
  }

  #adopt(fd: number, callback: (() => void) | undefined): void {
    if (callback) this.once('connected', callback);
    try {
      // A number that is no fd at all (-1, 1.5) is EBADF here, as usocket's
      // adopt reports it, not a RangeError.
      if (!Number.isInteger(fd) || fd < 0 || fd > 2 ** 31 - 1) {
        throw new FdPassError('EBADF', `fd ${fd} is not an open file descriptor`, { errno: -EBADF, syscall: 'fcntl' });
      }
      streamInternals.adopt(this, fd);
    } catch (err) {
      if (callback) this.removeListener('connected', callback);
      // An event, not a throw, and the stream lives on (usocket's behaviour):
      // its caller may connect() again.
      process.nextTick(() => {
        this.emit('error', err as Error);
        this.emit('close', err);
      });
    }
  }

  // FdStream announces a connection with net.Socket's 'connect' (and
  // 'ready'); a USocket with usocket's 'connected' only.
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connect') return super.emit('connected', ...args);
    if (event === 'ready') return false;
    return super.emit(event, ...args);
  }

  /**
   * `read(size?)` as a Readable's. `read(size, count)` as usocket's: null
   * until `count` fds have arrived (and `size` bytes, unless size is 0 or
   * null), else `{ data, fds }` with exactly `count` fds (null: all that
   * arrived). The fds are yours to close.
   */
  override read(size?: number): Buffer | null;
  override read(size: number | undefined | null, fdCount: number | null): FdChunk | null;
  override read(size?: number | null, fdCount?: number | null): Buffer | FdChunk | null {
    if (fdCount === undefined) return super.read(size ?? undefined);
    if (typeof fdCount === 'number' && streamInternals.arrivedFds(this) < fdCount) return null;
    return super.read(size ?? undefined, fdCount);
  }

  /** Put bytes back in front of the stream (Readable's unshift), and `fds` in front of the fds not taken yet. */
  override unshift(chunk: unknown, fds?: unknown): void {
    if (chunk !== null && chunk !== undefined) super.unshift(chunk);
    if (Array.isArray(fds) && fds.length > 0) {
      for (const fd of fds) if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw outOfRange('fds', 'an array of fds', fds);
      streamInternals.putBackFds(this, fds as number[]);
    }
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

  /**
   * Stop listening; 'close' follows. The socket file stays, as usocket
   * leaves it (its users unlink it); a later listen() on the path replaces
   * it once nobody listens there.
   */
  close(callback?: () => void): void {
    if (callback !== undefined) this.once('close', callback);
    if (this.#closed) return;
    this.#closed = true;
    const acceptor = this.#acceptor;
    this.#acceptor = null;
    acceptor?.close();
    process.nextTick(() => this.emit('close'));
  }
}
