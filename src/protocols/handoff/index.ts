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
// This file is the state machine and the public API; the wire format is in
// protocol.ts, each side's part of the exchange in successor.ts and
// predecessor.ts, what draining does in ../drain.ts (shared with fdpass/systemd).
import { EventEmitter } from 'node:events';
import { lstatSync, renameSync } from 'node:fs';
import type { Server } from 'node:net';
import {
  listenOn,
  serverFromFd,
  type ServerListen,
  ErrorCodes,
  checkSignal,
  abortError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  type Kept,
  FdServer,
  sameUid,
  type FdSocket,
  type PeerCredentials,
  Drainer,
  unlinkQuietly,
  type DrainResult,
  FdPassError,
  checkFdNumber,
  socketInfo,
  toFd,
} from '../internal.js';
export type { DrainResult } from '../internal.js';
import { offerTo, refuseBusy } from './predecessor.js';
import { PROTOCOL_VERSION, handoffError } from './protocol.js';
import { announceReady, takeOver } from './successor.js';

export { PROTOCOL_VERSION };

/** What listen() falls back to when no predecessor handed over a listener of that name. */
export type ListenFallback = ServerListen;

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

function checkMs(value: unknown, name: string, def: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0) throw outOfRange(name, 'an integer >= 0', value);
  return value;
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
  #state: State = 'starting';
  #received: Map<string, Kept<number>>;
  #upstream: FdSocket | null;
  readonly #servers = new Drainer(() => this.#state === 'draining' || this.#state === 'drained');
  /** Listening fds offered as they are (add({ fd }, name)): their owner stops using them on 'takeover'. */
  readonly #fds = new Map<string, number>();
  #control: FdServer | null = null;
  #controlIno: number | null = null;
  #drainPromise: Promise<DrainResult> | null = null;

  private constructor(
    options: Required<Omit<HandoffOptions, 'allow' | 'signal' | 'exit'>> & { allow: (peer: PeerCredentials) => boolean },
    upstream: FdSocket | null,
    received: Map<string, Kept<number>>,
  ) {
    super();
    this.path = options.path;
    this.#allow = options.allow;
    this.#mode = options.mode;
    this.#drainTimeout = options.drainTimeout;
    this.#timeout = options.timeout;
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
    };
    const exit = options.exit ?? true;
    if (typeof exit !== 'boolean') throw invalidArgType('options.exit', 'of type boolean', exit);
    const signal = checkSignal(options.signal);
    if (signal?.aborted) throw abortError(signal);

    const taken = await takeOver(path, allow, resolved.timeout, signal);
    const handoff = new Handoff(resolved, taken?.upstream ?? null, taken?.received ?? new Map());
    // Exiting is the caller's policy, applied here at the edge (exit: false
    // leaves it to the caller): the process ends once drained.
    if (exit) handoff.once('drained', () => setImmediate(() => process.exit(0)));
    return handoff;
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
    const kept = this.#received.get(name);
    if (kept === undefined) return undefined;
    this.#received.delete(name);
    return kept.handOut();
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

  /**
   * Offer a server that is already listening, under `name`. Or a listening
   * socket as `{ fd }` (one of a ClusterPrimary's `sockets`): it is offered as it
   * is and stays yours; draining it is yours too, on 'takeover' (this
   * handoff drains only its servers).
   */
  add(server: Server | { fd: number }, name: string): void {
    if (server !== null && typeof server === 'object' && !('listen' in server) && 'fd' in server) {
      this.#checkName(name);
      checkFdNumber(server.fd, 'server.fd');
      const info = socketInfo(server.fd);
      if (!info.listening) throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${server.fd} is not a listening socket`);
      this.#fds.set(name, server.fd);
      return;
    }
    this.#checkAdd(server as Server, name);
    if (!(server as Server).listening) throw invalidArgValue('server', 'must be listening', server);
    this.#register(server as Server, name);
  }

  #checkAdd(server: Server, name: string): void {
    if (typeof name !== 'string' || name.length === 0) throw invalidArgType('name', 'a non-empty string', name);
    if (server === null || typeof server !== 'object' || typeof server.listen !== 'function') {
      throw invalidArgType('server', 'a net.Server (or http.Server), or { fd } of a listening socket', server);
    }
    this.#checkName(name);
  }

  #checkName(name: string): void {
    if (typeof name !== 'string' || name.length === 0) throw invalidArgType('name', 'a non-empty string', name);
    if (this.#servers.has(name) || this.#fds.has(name)) throw invalidArgValue('name', 'is already in use', name);
    if (this.#state !== 'starting' && this.#state !== 'serving')
      throw handoffError(ErrorCodes.CLOSED, `cannot add a server while ${this.#state}`);
  }

  #register(server: Server, name: string): void {
    this.#servers.add(server, name);
  }

  #discardReceived(): void {
    for (const kept of this.#received.values()) kept.discard();
    this.#received.clear();
  }

  /**
   * We serve: close inherited fds nobody used, take over the control socket,
   * tell the predecessor (which then drains and exits), and from now on offer
   * our listeners to a successor.
   */
  async ready(): Promise<void> {
    if (this.#state !== 'starting') throw handoffError(ErrorCodes.CLOSED, `ready() while ${this.#state}`);
    this.#discardReceived();
    await this.#bindControl();
    this.#state = 'serving';
    const up = this.#upstream;
    this.#upstream = null;
    if (up) await announceReady(up, this.#timeout);
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
      await refuseBusy(sock);
      await sock.close();
      return;
    }
    this.#state = 'offering';
    const peer = sock.peer;
    let result;
    try {
      const listening = (): { name: string; fd: number }[] => [
        ...this.#servers.listening().map((e) => ({ name: e.name, fd: toFd(e.server) })),
        ...[...this.#fds].map(([name, fd]) => ({ name, fd })),
      ];
      result = await offerTo(sock, listening, this.#timeout, () => {
        this.#state = 'draining';
      });
    } finally {
      await sock.close();
    }
    if (!result.took) {
      if (this.#state === 'offering') this.#state = 'serving';
      // A successor that renamed its control socket over ours and died:
      // take the path back, so that the next one finds us.
      if (this.#state === 'serving' && !this.#controlIsOurs()) {
        await this.#bindControl().catch((err: unknown) => this.emit('error', err as Error));
      }
      this.emit('aborted', peer, result.reason);
      return;
    }
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
    this.#discardReceived();
    const result = await this.#servers.drain(this.#drainTimeout, (state) => this.emit('draining', state));
    this.#state = 'drained';
    this.emit('drained', result);
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
    this.#discardReceived();
  }

  /** `await using handoff = await Handoff.start(...)`: close() at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
