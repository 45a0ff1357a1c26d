// FdServer: a listening AF_UNIX socket that accepts FdSockets on demand. It
// stands on the io core: an Acceptor (src/io/acceptor.ts) and a WaitQueue.
import { EventEmitter } from 'node:events';
import { resolve as resolvePath } from 'node:path';
import { AddressOptions, ResolvedAddress, addressOptions, encodeAddress, socketTypeName, socketTypeNumber } from '../base/address.js';
import type { SocketType } from '../base/address.js';
import { checkSignal, closedError, invalidArgType, invalidArgValue, outOfRange } from '../base/errors.js';
import { Acceptor, type Accepted } from '../io/acceptor.js';
import {
  adoptSocket,
  checkAcceptFds,
  checkPassPidfd,
  listenSocket,
  passPidfds,
  refuseFds,
  unlinkIfSame,
  type FileId,
  type PeerCredentials,
} from '../io/sockops.js';
import { WaitQueue } from '../io/waiters.js';
import { FdSocket, createSocket } from './socket.js';

export interface ListenOptions extends AddressOptions {
  /** listen(2) backlog; default 511. */
  backlog?: number;
  /** Mode of the socket file, set before listen(2); default 0o600. */
  mode?: number;
  /**
   * Decides from the peer's credentials (SO_PEERCRED) whether to keep a
   * connection, before any byte is read. Default: everyone who can open a
   * path socket's file; for abstract names (no file permissions) the same uid.
   */
  allow?: (peer: PeerCredentials) => boolean;
  /**
   * false: the kernel refuses any fd sent to the accepted sockets
   * (SO_PASSRIGHTS off, set on the listener before listen(2) and inherited
   * by every connection); a sender gets ERR_FDPASS_FDS_REFUSED (EPERM).
   * Linux >= 6.16, else ERR_FDPASS_UNSUPPORTED_KERNEL. Default true.
   */
  acceptFds?: boolean;
  /**
   * true ('seqpacket' only): every message the accepted sockets receive
   * carries its sender's pidfd as `message.pidfd` (SO_PASSPIDFD, set on the
   * listener before listen(2) and inherited by every connection). Linux >=
   * 6.5, else ERR_FDPASS_UNSUPPORTED_KERNEL. Default false.
   */
  passPidfd?: boolean;
}

/** Options of FdServer.fromFd. */
export interface FromFdServerOptions {
  allow?: (peer: PeerCredentials) => boolean;
  acceptFds?: boolean;
  /** As ListenOptions.passPidfd; connections queued before fromFd may not have it. */
  passPidfd?: boolean;
}

export interface AcceptOptions {
  signal?: AbortSignal;
}

export interface FdServerEvents {
  connection: [socket: FdSocket];
  error: [error: Error];
  close: [];
}

interface AcceptWaiter {
  resolve: (s: FdSocket | null) => void;
  reject: (e: Error) => void;
}

/** The default `allow` of listeners without file permissions: our own uid only. */
export function sameUid(peer: PeerCredentials): boolean {
  return typeof process.getuid === 'function' && peer.uid === process.getuid();
}

/**
 * A listening AF_UNIX socket. Accepts only when asked (accept(), an iterator
 * or a 'connection' listener).
 */
export class FdServer extends EventEmitter<FdServerEvents> {
  readonly type: SocketType;
  /** The path this server listens on, if any. */
  readonly path: string | undefined;
  /** The abstract name this server listens on, if any. */
  readonly abstract: string | undefined;
  readonly #acceptor: Acceptor;
  readonly #sockType: number;
  readonly #passPidfd: boolean;
  readonly #waiters = new WaitQueue<AcceptWaiter>();
  #closed = false;
  #file: FileId | null = null;

  private constructor(
    fd: number,
    type: number,
    where: { path?: string; abstract?: string },
    allow: ((peer: PeerCredentials) => boolean) | undefined,
    passPidfd: boolean,
  ) {
    super();
    this.#sockType = type;
    this.#passPidfd = passPidfd;
    this.type = socketTypeName(type);
    this.path = where.path;
    this.abstract = where.abstract;
    this.#acceptor = new Acceptor(
      fd,
      { allow },
      {
        demand: () => this.#waiters.length > 0 || this.listenerCount('connection') > 0,
        deliver: (conn) => this.#deliver(conn),
        error: (err) => {
          if (this.listenerCount('error') > 0) this.emit('error', err);
        },
      },
    );
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'connection') queueMicrotask(() => this.#acceptor.pump());
    });
  }

  /**
   * Listen on a path or an abstract name. The socket file gets `mode`
   * (default 0o600) before listen(2), so there is no window in which others
   * can connect. A stale socket file (nobody listening) is replaced; a live
   * one gives EADDRINUSE.
   */
  static listen(arg: string | ListenOptions): Promise<FdServer> {
    const options = addressOptions<ListenOptions>(arg, 'path');
    const address = encodeAddress(options);
    if (options.type === 'dgram') {
      throw invalidArgValue('type', "cannot be 'dgram' for a listener (use FdSocket.bindDatagram)", options.type);
    }
    const type = socketTypeNumber(options.type);
    const backlog = options.backlog ?? 511;
    if (typeof backlog !== 'number') throw invalidArgType('backlog', 'of type number', backlog);
    if (!Number.isInteger(backlog) || backlog < 0 || backlog > 65535) throw outOfRange('backlog', 'an integer from 0 to 65535', backlog);
    const mode = options.mode ?? 0o600;
    if (typeof mode !== 'number') throw invalidArgType('mode', 'of type number', mode);
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw outOfRange('mode', 'an integer from 0 to 0o7777', mode);
    let allow = options.allow;
    if (allow !== undefined && typeof allow !== 'function') throw invalidArgType('allow', 'a function', allow);
    if (allow === undefined && address.abstract !== undefined) allow = sameUid;
    const acceptFds = checkAcceptFds(options.acceptFds);
    const passPidfd = checkPassPidfd(options.passPidfd, type);

    return FdServer.#listen(address, type, backlog, mode, allow, acceptFds, passPidfd);
  }

  static async #listen(
    address: ResolvedAddress,
    type: number,
    backlog: number,
    mode: number,
    allow: ((peer: PeerCredentials) => boolean) | undefined,
    acceptFds: boolean,
    passPidfd: boolean,
  ): Promise<FdServer> {
    const { fd, file } = listenSocket(address, type, backlog, mode, acceptFds, passPidfd);
    const where = address.path !== undefined ? { path: resolvePath(address.path) } : { abstract: address.abstract as string };
    const server = new FdServer(fd, type, where, allow, passPidfd);
    server.#file = file;
    return server;
  }

  /**
   * Adopt a listening socket fd (from systemd, or received from a peer). The
   * server owns it; close() does not unlink any file. `acceptFds: false`
   * turns SO_PASSRIGHTS off on it: connections accepted from now on refuse
   * fds (those already queued may have been made before). `passPidfd:
   * true` likewise turns SO_PASSPIDFD on ('seqpacket' listeners).
   */
  static fromFd(fd: number, options: FromFdServerOptions = {}): FdServer {
    const acceptFds = checkAcceptFds(options.acceptFds);
    const type = adoptSocket(fd, { listening: true });
    const passPidfd = checkPassPidfd(options.passPidfd, type);
    if (!acceptFds) refuseFds(fd);
    if (passPidfd) passPidfds(fd);
    return new FdServer(fd, type, {}, options.allow, passPidfd);
  }

  /** The listening fd, or -1 once closed. */
  get fd(): number {
    return this.#acceptor.fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Accept one connection (allowed by `allow`). Rejects with ERR_FDPASS_CLOSED once closed. */
  accept(options: AcceptOptions = {}): Promise<FdSocket> {
    const signal = checkSignal(options.signal);
    return new Promise<FdSocket>((resolve, reject) => {
      if (this.#closed) return reject(closedError('server'));
      this.#addWaiter({ resolve: (s) => (s ? resolve(s) : reject(closedError('server'))), reject }, signal);
    });
  }

  /** Iterate over connections until the server closes. */
  [Symbol.asyncIterator](): AsyncIterableIterator<FdSocket> {
    const iterator: AsyncIterableIterator<FdSocket> = {
      next: () =>
        new Promise<IteratorResult<FdSocket>>((resolve, reject) => {
          if (this.#closed) return resolve({ value: undefined, done: true });
          this.#addWaiter(
            {
              resolve: (s) => resolve(s ? { value: s, done: false } : { value: undefined, done: true }),
              reject,
            },
            undefined,
          );
        }),
      return: async (): Promise<IteratorResult<FdSocket>> => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #addWaiter(w: AcceptWaiter, signal: AbortSignal | undefined): void {
    if (this.#waiters.add(w, signal)) this.#acceptor.pump();
  }

  /** An accepted connection becomes an FdSocket, for a waiter or a 'connection' listener. */
  #deliver(conn: Accepted): void {
    let sock: FdSocket;
    try {
      sock = createSocket(conn.fd, this.#sockType, conn.peer, this.#passPidfd);
    } catch {
      return; // watching it failed: the fd was closed
    }
    const w = this.#waiters.shift();
    if (w) w.resolve(sock);
    else this.emit('connection', sock);
  }

  /**
   * Stop listening: close the socket, unlink its file (if it is still ours),
   * close connections accepted but not yet handed out. Pending accept()
   * calls reject with ERR_FDPASS_CLOSED; iterators end. Connections already
   * handed out stay open.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#acceptor.close();
    if (this.path !== undefined && this.#file) unlinkIfSame(this.path, this.#file);
    this.#waiters.drain((w) => w.resolve(null));
    process.nextTick(() => this.emit('close'));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
