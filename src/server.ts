// FdServer: a listening AF_UNIX socket that accepts FdSockets on demand.
import { EventEmitter } from 'node:events';
import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { AddressOptions, ResolvedAddress, addressOptions, encodeAddress, socketTypeName, socketTypeNumber } from './address.js';
import type { SocketType } from './address.js';
import {
  ErrorCodes,
  FdPassError,
  checkSignal,
  abortError,
  closedError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
} from './errors.js';
import { checkFdNumber } from './fds.js';
import { watch } from './io/backend.js';
import { POLLIN, type Readiness } from './io/readiness.js';
import { native } from './native.js';
import { FdSocket, PeerCredentials, peerCredentials, socketInfo } from './socket.js';

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
}

export interface AcceptOptions {
  signal?: AbortSignal;
}

export interface FdServerEvents {
  connection: [socket: FdSocket];
  error: [error: Error];
  close: [];
}

const ACCEPT_BATCH = 64;
// Batches accepted per wake-up. Unbounded, a flood of connections was accepted
// in one synchronous pass: every socket and every fd its handler received
// stayed open until the pass ended (10,000 connections hit RLIMIT_NOFILE).
const ACCEPT_BATCHES_PER_WAKE = 4;
const acceptBuf = new Int32Array(ACCEPT_BATCH);
const AF_UNIX = 1;

interface AcceptWaiter {
  resolve: (s: FdSocket | null) => void;
  reject: (e: Error) => void;
  cleanup: (() => void) | null;
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
  #fd: number;
  #io: Readiness | null;
  #closed = false;
  #allow: ((peer: PeerCredentials) => boolean) | undefined;
  #sockType: number;
  #accepted: FdSocket[] = [];
  #waiters: AcceptWaiter[] = [];
  #backoff: NodeJS.Timeout | null = null;
  #fileId: { dev: number; ino: number } | null = null;
  #pumping = false;

  private constructor(
    fd: number,
    type: number,
    where: { path?: string; abstract?: string },
    allow: ((peer: PeerCredentials) => boolean) | undefined,
  ) {
    super();
    this.#fd = fd;
    this.#sockType = type;
    this.type = socketTypeName(type);
    this.path = where.path;
    this.abstract = where.abstract;
    this.#allow = allow;
    this.#io = watch(fd, () => this.#onPoll());
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'connection') queueMicrotask(() => this.#pump());
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

    return FdServer.#listen(address, type, backlog, mode, allow);
  }

  static async #listen(
    address: ResolvedAddress,
    type: number,
    backlog: number,
    mode: number,
    allow: ((peer: PeerCredentials) => boolean) | undefined,
  ): Promise<FdServer> {
    const fd = native.socket(type);
    if (fd < 0) throw systemError(fd, 'socket');
    let fileId: { dev: number; ino: number } | null = null;
    try {
      let r = native.bind(fd, address.bytes);
      if (r < 0 && address.path !== undefined && -r === 98 /* EADDRINUSE */ && isStale(address.bytes, address.path, type)) {
        unlinkSync(address.path);
        r = native.bind(fd, address.bytes);
      }
      if (r < 0) throw systemError(r, 'bind', address.display);
      if (address.path !== undefined) {
        // Nobody can connect before listen(2): set the mode now.
        chmodSync(address.path, mode);
        const st = statSync(address.path);
        fileId = { dev: st.dev, ino: st.ino };
      }
      r = native.listen(fd, backlog);
      if (r < 0) throw systemError(r, 'listen', address.display);
    } catch (err) {
      native.close(fd);
      if (fileId && address.path !== undefined) {
        try {
          unlinkSync(address.path);
        } catch {
          // already gone
        }
      }
      throw err;
    }
    const where = address.path !== undefined ? { path: resolvePath(address.path) } : { abstract: address.abstract as string };
    const server = new FdServer(fd, type, where, allow);
    server.#fileId = fileId;
    return server;
  }

  /**
   * Adopt a listening socket fd (from systemd, or received from a peer). The
   * server owns it; close() does not unlink any file.
   */
  static fromFd(fd: number, options: { allow?: (peer: PeerCredentials) => boolean } = {}): FdServer {
    checkFdNumber(fd);
    const info = socketInfo(fd);
    if (info.domain !== AF_UNIX) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${fd} is not an AF_UNIX socket`);
    if (!info.listening) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${fd} is not a listening socket`);
    const r = native.setFlags(fd, 1, 1);
    if (r < 0) throw systemError(r, 'fcntl');
    return new FdServer(fd, info.type, {}, options.allow);
  }

  /** The listening fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Accept one connection (allowed by `allow`). Rejects with ERR_FDPASS_CLOSED once closed. */
  accept(options: AcceptOptions = {}): Promise<FdSocket> {
    const signal = checkSignal(options.signal);
    return new Promise<FdSocket>((resolve, reject) => {
      if (this.#closed) return reject(closedError('server'));
      const w: AcceptWaiter = {
        resolve: (s) => (s ? resolve(s) : reject(closedError('server'))),
        reject,
        cleanup: null,
      };
      this.#addWaiter(w, signal);
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
              cleanup: null,
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
    if (signal) {
      if (signal.aborted) return w.reject(abortError(signal));
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          w.reject(abortError(signal));
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      w.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    this.#waiters.push(w);
    this.#pump();
  }

  #demand(): boolean {
    return this.#waiters.length > 0 || this.listenerCount('connection') > 0;
  }

  #pump(): void {
    if (this.#pumping || this.#closed) return;
    this.#pumping = true;
    try {
      let batches = 0;
      for (;;) {
        while (this.#accepted.length > 0 && this.#demand()) {
          const s = this.#accepted.shift()!;
          const w = this.#waiters.shift();
          if (w) {
            w.cleanup?.();
            w.resolve(s);
          } else this.emit('connection', s);
          if (this.#closed) return;
        }
        if (!this.#demand() || this.#backoff) break;
        if (batches++ >= ACCEPT_BATCHES_PER_WAKE) {
          // Let the loop (and the microtasks of the connections handed out)
          // run before accepting more; the listener's readiness brings us back.
          this.#setPolling(true);
          break;
        }
        const n = native.acceptBatch(this.#fd, acceptBuf);
        if (n === native.EAGAIN) {
          this.#setPolling(true);
          break;
        }
        if (n < 0) {
          this.#acceptFailed(n);
          break;
        }
        for (let i = 0; i < n; i++) this.#admit(acceptBuf[i]!);
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Check the peer with `allow` before anything is read; refuse by closing. */
  #admit(fd: number): void {
    let peer: PeerCredentials;
    try {
      peer = peerCredentials(fd);
    } catch {
      native.close(fd);
      return;
    }
    if (this.#allow) {
      let ok = false;
      try {
        ok = this.#allow(peer) === true;
      } catch (err) {
        if (this.listenerCount('error') > 0) this.emit('error', err as Error);
      }
      if (!ok) {
        native.close(fd);
        return;
      }
    }
    try {
      this.#accepted.push(new FdSocket(fd, this.#sockType, peer));
    } catch {
      // the FdSocket constructor closed the fd
    }
  }

  #acceptFailed(errno: number): void {
    const err = systemError(errno, 'accept4');
    const code = err.code;
    if (code === 'ECONNABORTED' || code === 'EPROTO') return;
    // Out of fds (EMFILE, ENFILE, ENOBUFS...): the listener stays readable,
    // so stop polling for a while instead of spinning, and keep waiters.
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.#setPolling(false);
    this.#backoff = setTimeout(() => {
      this.#backoff = null;
      this.#pump();
    }, 100);
    this.#backoff.unref?.();
  }

  // Any event (POLLIN; POLLERR stopped the watching, and accept4 tells why)
  // means: accept if someone wants a connection.
  #onPoll(): void {
    if (this.#closed) return;
    if (this.#demand()) this.#pump();
    else this.#setPolling(false);
  }

  #setPolling(on: boolean): void {
    if (this.#closed || !this.#io) return;
    this.#io.setInterest(on ? POLLIN : 0);
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
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#io?.close(true);
    this.#io = null;
    this.#fd = -1;
    if (this.path !== undefined && this.#fileId) {
      try {
        const st = lstatSync(this.path);
        if (st.dev === this.#fileId.dev && st.ino === this.#fileId.ino) unlinkSync(this.path);
      } catch {
        // gone already
      }
    }
    const accepted = this.#accepted;
    this.#accepted = [];
    for (const s of accepted) await s.close();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      w.cleanup?.();
      w.resolve(null);
    }
    process.nextTick(() => this.emit('close'));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A socket file is stale when it is a socket and connecting to it is refused:
 * its listener is gone. A live one, or a file that is not a socket, is never
 * touched.
 */
export function isStale(bytes: Uint8Array, path: string, type: number): boolean {
  try {
    if (!lstatSync(path).isSocket()) return false;
  } catch {
    return false;
  }
  const probe = native.socket(type);
  if (probe < 0) return false;
  const r = native.connect(probe, bytes);
  native.close(probe);
  return -r === 111; // ECONNREFUSED
}
