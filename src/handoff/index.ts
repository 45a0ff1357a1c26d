// fdpass/handoff: zero-downtime restarts by handing listening sockets from
// the running process to its replacement.
//
// The running process offers its listeners, by name, on a control socket (a
// Unix seqpacket socket at `path`, same uid only by default). A new process
// connects, takes them (one message, one SCM_RIGHTS), serves on the very same
// sockets (no port is ever closed), and says "ready". Only then does the old
// process stop accepting, finish its in-flight requests (with a deadline) and
// exit. If the new process goes away before "ready", the old one keeps
// serving and offering.
//
// Protocol (JSON, one message per seqpacket):
//   new -> old  {"op":"take","version":1,"pid":N}
//   old -> new  {"op":"offer","version":1,"pid":N,"names":[...]}  + one fd per name
//            or {"op":"busy"} (another handoff is in progress)
//   new -> old  {"op":"ready"}          (after the new process took the control path)
//   old -> new  {"op":"draining"}        then the old process closes the connection
//   old -> new  {"op":"abort","reason"}  (the old process gave up waiting)
import { EventEmitter } from 'node:events';
import { accessSync, constants as fsConstants, lstatSync, renameSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, resolve as resolvePath } from 'node:path';
import type { Server } from 'node:net';
import { FdServer, sameUid } from '../server.js';
import { serverFromFd } from '../convert.js';
import { discardFds } from '../recv.js';
import { FdSocket } from '../socket.js';
import type { PeerCredentials } from '../socket.js';
import { ErrorCodes, FdPassError, checkSignal, abortError, invalidArgType, invalidArgValue, outOfRange } from '../errors.js';
import { toFd } from '../fds.js';
import { disown } from '../native.js';
import { Drainer, listenOn, unlinkQuietly, type DrainResult, type ServerListen } from './drain.js';

export type { DrainResult } from './drain.js';

export const PROTOCOL_VERSION = 1;

export interface HandoffOptions {
  /** Path of the control socket, e.g. /run/myapp/handoff.sock. */
  path: string;
  /** Who may take the listeners (and whom we take them from). Default: our own uid (SO_PEERCRED). */
  allow?: (peer: PeerCredentials) => boolean;
  /** Mode of the control socket file; default 0o600. */
  mode?: number;
  /** How long in-flight requests may take once a successor is ready, in ms (default 10000). */
  drainTimeout?: number;
  /** How long to wait for the other side: for an offer, and for a successor's "ready", in ms (default 30000). */
  timeout?: number;
  /** Exit the process (code 0) once drained after a handoff. Default true. */
  exit?: boolean;
  /** Gives up waiting for the predecessor's offer (start() rejects with an AbortError). */
  signal?: AbortSignal;
}

/** What listen() falls back to when no predecessor handed over a listener of that name. */
export type ListenFallback = ServerListen;

export interface HandoffEvents {
  /** A successor took our listeners and is ready: we are draining. */
  takeover: [peer: PeerCredentials];
  /** A successor went away (or timed out) before it was ready: we keep serving. */
  aborted: [peer: PeerCredentials, reason: string];
  /** A peer that `allow` refused tried to connect to the control socket. */
  refused: [peer: PeerCredentials];
  /** Draining started: what was still running. */
  draining: [state: { inFlight: number; connections: number }];
  drained: [result: DrainResult];
  error: [error: Error];
}

type State = 'starting' | 'serving' | 'offering' | 'draining' | 'drained' | 'closed';

interface TakeMessage {
  op: string;
  [key: string]: unknown;
}

function handoffError(code: string, message: string): FdPassError {
  return new FdPassError(code, `handoff: ${message}`);
}

function parse(data: Buffer): TakeMessage | null {
  try {
    const v: unknown = JSON.parse(data.toString('utf8'));
    if (v !== null && typeof v === 'object' && typeof (v as TakeMessage).op === 'string') return v as TakeMessage;
  } catch {
    // not JSON
  }
  return null;
}

function checkMs(value: unknown, name: string, def: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0) throw outOfRange(name, 'an integer >= 0', value);
  return value;
}

async function recvWithin(
  sock: FdSocket,
  ms: number,
  signal?: AbortSignal,
): Promise<{ message: TakeMessage | null; fds: number[] } | null> {
  const timeout = AbortSignal.timeout(ms);
  const m = await sock.recv({ signal: signal ? AbortSignal.any([timeout, signal]) : timeout });
  if (m === null) return null;
  return { message: parse(m.data), fds: m.fds };
}

/**
 * A first start binds the control socket in the folder of `path` (at ready()):
 * fail now, naming that folder, when it is missing or not writable.
 */
function checkControlFolder(path: string): void {
  const dir = dirname(resolvePath(path));
  const fail = (code: 'ENOENT' | 'ENOTDIR' | 'EACCES', why: string): never => {
    throw new FdPassError(code, `Handoff.start: the folder ${dir} ${why} (the control socket is ${path})`, {
      errno: -osConstants.errno[code],
      syscall: code === 'EACCES' ? 'access' : 'stat',
      path: dir,
    });
  };
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') return fail('ENOENT', 'does not exist');
    if (code === 'ENOTDIR') return fail('ENOTDIR', 'is not a folder');
    throw err;
  }
  if (!isDir) fail('ENOTDIR', 'is not a folder');
  try {
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch {
    fail('EACCES', 'is not writable by this process');
  }
}

/**
 * One generation of a restartable service. Start it first thing:
 *
 *     const handoff = await Handoff.start({ path: '/run/app/handoff.sock' });
 *     await handoff.listen(server, 'http', 8080); // the predecessor's socket, or a new one
 *     await handoff.ready();                      // the predecessor drains and exits
 */
export class Handoff extends EventEmitter<HandoffEvents> {
  /** The control socket's path. */
  readonly path: string;
  /** Credentials of the process we took the listeners from, or null for a first start. */
  readonly predecessor: PeerCredentials | null;
  #allow: (peer: PeerCredentials) => boolean;
  #mode: number;
  #drainTimeout: number;
  #timeout: number;
  #exit: boolean;
  #state: State = 'starting';
  #received: Map<string, number>;
  #upstream: FdSocket | null;
  #servers = new Drainer(() => this.#state === 'draining' || this.#state === 'drained');
  #control: FdServer | null = null;
  #controlIno: number | null = null;
  #drainPromise: Promise<DrainResult> | null = null;

  private constructor(
    options: Required<Omit<HandoffOptions, 'allow' | 'signal'>> & { allow: (peer: PeerCredentials) => boolean },
    upstream: FdSocket | null,
    received: Map<string, number>,
  ) {
    super();
    this.path = options.path;
    this.#allow = options.allow;
    this.#mode = options.mode;
    this.#drainTimeout = options.drainTimeout;
    this.#timeout = options.timeout;
    this.#exit = options.exit;
    this.#upstream = upstream;
    this.predecessor = upstream ? upstream.peer : null;
    this.#received = received;
  }

  /**
   * Connect to the running generation at `path` and take its listeners. With
   * nobody there (no file, or a stale one), this is a first start and
   * nothing is inherited. Rejects with ERR_FDPASS_HANDOFF_REFUSED (the peer
   * refused us, or runs as a user `allow` refuses), ERR_FDPASS_HANDOFF_BUSY,
   * ERR_FDPASS_PROTOCOL or ERR_FDPASS_HANDOFF_ABORTED (timeout). A first
   * start whose folder for `path` is missing or not writable rejects at once
   * with ENOENT, ENOTDIR or EACCES naming that folder (`err.path`).
   */
  static async start(options: HandoffOptions): Promise<Handoff> {
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const path = options.path;
    if (typeof path !== 'string' || path.length === 0) throw invalidArgType('options.path', 'a non-empty string', path);
    const allow = options.allow ?? sameUid;
    if (typeof allow !== 'function') throw invalidArgType('options.allow', 'a function', allow);
    const mode = options.mode ?? 0o600;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw outOfRange('options.mode', 'an integer from 0 to 0o7777', mode);
    }
    const resolved = {
      path,
      allow,
      mode,
      drainTimeout: checkMs(options.drainTimeout, 'options.drainTimeout', 10_000),
      timeout: checkMs(options.timeout, 'options.timeout', 30_000),
      exit: options.exit ?? true,
    };
    if (typeof resolved.exit !== 'boolean') throw invalidArgType('options.exit', 'of type boolean', resolved.exit);
    const signal = checkSignal(options.signal);
    if (signal?.aborted) throw abortError(signal);

    let sock: FdSocket;
    try {
      sock = await FdSocket.connect({ path, type: 'seqpacket', ...(signal ? { signal } : {}) });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        checkControlFolder(path);
        return new Handoff(resolved, null, new Map());
      }
      throw err;
    }
    // Until a listener is handed out (take(), listen()), its fd stays ours: the
    // end of the worker that runs this handoff closes it.
    sock._keepOwned();
    const received = new Map<string, number>();
    try {
      const peer = sock.peer;
      if (!allow(peer)) {
        throw handoffError(ErrorCodes.HANDOFF_REFUSED, `the process at ${path} (pid ${peer.pid}, uid ${peer.uid}) is not allowed`);
      }
      await sock.send(JSON.stringify({ op: 'take', version: PROTOCOL_VERSION, pid: process.pid }));
      let reply;
      try {
        reply = await recvWithin(sock, resolved.timeout, signal);
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        if ((err as Error).name === 'AbortError') {
          throw handoffError(ErrorCodes.HANDOFF_ABORTED, `no offer from pid ${peer.pid} within ${resolved.timeout} ms`);
        }
        throw err;
      }
      if (reply === null) {
        throw handoffError(
          ErrorCodes.HANDOFF_REFUSED,
          `the process at ${path} closed the connection without an offer (refused by its allow?)`,
        );
      }
      const { message, fds } = reply;
      if (message?.op === 'busy') {
        discardFds(fds);
        throw handoffError(ErrorCodes.HANDOFF_BUSY, `pid ${peer.pid} is already handing off to another process`);
      }
      const names = message?.names;
      if (
        message?.op !== 'offer' ||
        message.version !== PROTOCOL_VERSION ||
        !Array.isArray(names) ||
        !names.every((n) => typeof n === 'string') ||
        new Set(names).size !== names.length ||
        names.length !== fds.length
      ) {
        discardFds(fds);
        throw handoffError(
          ErrorCodes.PROTOCOL,
          `unexpected answer from pid ${peer.pid}: ${JSON.stringify(message)} with ${fds.length} fd(s)`,
        );
      }
      names.forEach((name: string, i) => received.set(name, fds[i]!));
    } catch (err) {
      await sock.close();
      // The peer closed on us (refused by its allow): EPIPE or ECONNRESET.
      const code = (err as { code?: string }).code;
      if (code === 'EPIPE' || code === 'ECONNRESET') {
        throw new FdPassError(ErrorCodes.HANDOFF_REFUSED, `handoff: the process at ${path} closed the connection (refused by its allow?)`, {
          cause: err,
        });
      }
      throw err;
    }
    return new Handoff(resolved, sock, received);
  }

  /** Names of listeners handed over by the predecessor and not yet used. */
  get inherited(): string[] {
    return [...this.#received.keys()];
  }

  /** 'starting', 'serving', 'offering' (a successor is taking over), 'draining', 'drained' or 'closed'. */
  get state(): State {
    return this.#state;
  }

  /** Take an inherited fd by name: it is yours now (undefined if there is none). */
  take(name: string): number | undefined {
    const fd = this.#received.get(name);
    if (fd === undefined) return undefined;
    this.#received.delete(name);
    disown(fd);
    return fd;
  }

  /**
   * Make `server` listen on the listener the predecessor handed over under
   * `name`, or, on a first start, as `fallback` says (a port, a path, or
   * net's listen options, e.g. `{ fd }` from listenFds()). The server is then
   * offered under `name` to our successor. Resolves true when inherited.
   */
  async listen(server: Server, name: string, fallback?: ListenFallback): Promise<boolean> {
    this.#checkAdd(server, name);
    const fd = this.take(name);
    if (fd !== undefined) {
      // Checks that the predecessor sent a listening socket; closes it on error.
      await serverFromFd(fd, server);
      this.#register(server, name);
      return true;
    }
    if (fallback === undefined) {
      throw invalidArgValue('fallback', `is needed: no listener named "${name}" was handed over`, fallback);
    }
    await listenOn(server, fallback);
    this.#register(server, name);
    return false;
  }

  /** Offer a server that is already listening, under `name`. */
  add(server: Server, name: string): void {
    this.#checkAdd(server, name);
    if (!server.listening) throw invalidArgValue('server', 'must be listening', server);
    this.#register(server, name);
  }

  #checkAdd(server: Server, name: string): void {
    if (typeof name !== 'string' || name.length === 0) throw invalidArgType('name', 'a non-empty string', name);
    if (server === null || typeof server !== 'object' || typeof server.listen !== 'function') {
      throw invalidArgType('server', 'a net.Server (or http.Server)', server);
    }
    if (this.#servers.has(name)) throw invalidArgValue('name', 'is already in use', name);
    if (this.#state !== 'starting' && this.#state !== 'serving')
      throw handoffError(ErrorCodes.CLOSED, `cannot add a server while ${this.#state}`);
  }

  #register(server: Server, name: string): void {
    this.#servers.add(server, name);
  }

  /**
   * We serve: close inherited fds nobody used, take over the control socket,
   * tell the predecessor (which then drains and exits), and from now on offer
   * our listeners to a successor.
   */
  async ready(): Promise<void> {
    if (this.#state !== 'starting') throw handoffError(ErrorCodes.CLOSED, `ready() while ${this.#state}`);
    discardFds([...this.#received.values()]);
    this.#received.clear();
    await this.#bindControl();
    this.#state = 'serving';
    const up = this.#upstream;
    this.#upstream = null;
    if (up) {
      try {
        await up.send(JSON.stringify({ op: 'ready' }));
        const reply = await recvWithin(up, this.#timeout);
        if (reply) discardFds(reply.fds);
        if (reply?.message?.op === 'abort') {
          throw handoffError(ErrorCodes.HANDOFF_ABORTED, `the predecessor gave up: ${String(reply.message.reason)}`);
        }
        // 'draining', or end of file (the predecessor is gone already): both fine.
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'EPIPE' && code !== 'ECONNRESET' && (err as Error).name !== 'AbortError') throw err;
      } finally {
        await up.close();
      }
    }
  }

  /** Listen on a temporary path and rename it over `path`: the control path is never missing. */
  async #bindControl(): Promise<void> {
    const tmp = `${this.path}.${process.pid}.new`;
    const control = await FdServer.listen({
      path: tmp,
      type: 'seqpacket',
      mode: this.#mode,
      allow: (peer) => {
        const ok = this.#allow(peer);
        if (!ok) process.nextTick(() => this.emit('refused', peer));
        return ok;
      },
    });
    try {
      this.#controlIno = lstatSync(tmp).ino;
      renameSync(tmp, this.path);
    } catch (err) {
      await control.close();
      throw err;
    }
    const old = this.#control;
    this.#control = control;
    control.on('connection', (sock) => {
      this.#onTaker(sock).catch((err: unknown) => {
        if (this.listenerCount('error') > 0) this.emit('error', err as Error);
      });
    });
    control.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    if (old) await old.close();
  }

  #controlIsOurs(): boolean {
    try {
      return lstatSync(this.path).ino === this.#controlIno;
    } catch {
      return false;
    }
  }

  /** A successor connected: offer the listeners, wait for "ready" or its end. */
  async #onTaker(sock: FdSocket): Promise<void> {
    if (this.#state !== 'serving') {
      await sock.send(JSON.stringify({ op: 'busy' })).catch(() => undefined);
      await sock.close();
      return;
    }
    this.#state = 'offering';
    // What a successor sends is closed here, never handed out: ours until then.
    sock._keepOwned();
    const peer = sock.peer;
    let reason = 'closed the connection before it was ready';
    let took = false;
    try {
      const first = await recvWithin(sock, this.#timeout);
      if (first) discardFds(first.fds);
      if (!first || first.message?.op !== 'take') {
        reason = first ? 'sent no take request' : reason;
        return;
      }
      const live = this.#servers.listening();
      await sock.send(
        JSON.stringify({ op: 'offer', version: PROTOCOL_VERSION, pid: process.pid, names: live.map((e) => e.name) }),
        live.map((e) => toFd(e.server)),
      );
      let next;
      try {
        next = await recvWithin(sock, this.#timeout);
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
        reason = `was not ready within ${this.#timeout} ms`;
        await sock.send(JSON.stringify({ op: 'abort', reason })).catch(() => undefined);
        return;
      }
      if (next) discardFds(next.fds);
      if (next?.message?.op !== 'ready') {
        if (next) reason = `sent ${JSON.stringify(next.message)} instead of ready`;
        return;
      }
      took = true;
      this.#state = 'draining';
      await sock.send(JSON.stringify({ op: 'draining' })).catch(() => undefined);
    } catch (err) {
      reason = (err as Error).message;
    } finally {
      await sock.close();
      if (!took) {
        if (this.#state === 'offering') this.#state = 'serving';
        // A successor that renamed its control socket over ours and died:
        // take the path back, so that the next one finds us.
        if (this.#state === 'serving' && !this.#controlIsOurs()) {
          await this.#bindControl().catch((err: unknown) => this.emit('error', err as Error));
        }
        this.emit('aborted', peer, reason);
      }
    }
    if (!took) return;
    this.emit('takeover', peer);
    const control = this.#control;
    this.#control = null;
    await control?.close();
    await this.#runDrain();
  }

  /**
   * Stop accepting on every listener, let in-flight requests finish (HTTP
   * responses get "Connection: close"), destroy what is left after
   * drainTimeout. Then 'drained', and the process exits unless `exit: false`.
   * Call it yourself for a plain shutdown (SIGTERM).
   */
  drain(): Promise<DrainResult> {
    if (this.#state === 'starting' || this.#state === 'serving') this.#state = 'draining';
    return this.#runDrain();
  }

  #runDrain(): Promise<DrainResult> {
    this.#drainPromise ??= this.#drainAll();
    return this.#drainPromise;
  }

  async #drainAll(): Promise<DrainResult> {
    this.#state = 'draining';
    const control = this.#control;
    this.#control = null;
    if (control) {
      await control.close();
      if (this.#controlIsOurs()) unlinkQuietly(this.path);
    }
    if (this.#upstream) {
      await this.#upstream.close();
      this.#upstream = null;
    }
    discardFds([...this.#received.values()]);
    this.#received.clear();
    const result = await this.#servers.drain(this.#drainTimeout, (state) => this.emit('draining', state));
    this.#state = 'drained';
    this.emit('drained', result);
    if (this.#exit) setImmediate(() => process.exit(0));
    return result;
  }

  /** Stop offering (close the control socket) without draining; the servers are left alone. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#state !== 'draining' && this.#state !== 'drained') this.#state = 'closed';
    const control = this.#control;
    this.#control = null;
    if (control) {
      await control.close();
      if (this.#controlIsOurs()) unlinkQuietly(this.path);
    }
    await this.#upstream?.close();
    this.#upstream = null;
    discardFds([...this.#received.values()]);
    this.#received.clear();
  }

  /** `await using handoff = await Handoff.start(...)`: close() at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
