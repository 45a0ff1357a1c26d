// Zero-downtime `systemctl restart`: listeners that outlive the process in
// systemd's fd store. The process takes each listener by name from what the
// manager passed (a socket unit's FileDescriptorName=, or the fd store), or
// listens anew; stores it; says READY=1; and on SIGTERM stops accepting,
// finishes what is in flight and exits. The listening socket itself never
// closes: connections that arrive while no process runs wait in its backlog
// until the next process accepts them.
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import {
  closeFds,
  listenOn,
  serverFromFd,
  type ServerListen,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  Drainer,
  type DrainResult,
  type DrainState,
} from '../internal.js';
export type { DrainResult, DrainState } from '../internal.js';
import { checkFdName, listenFds, notify, removeStoredFds, storeFds, type ListenFd } from './daemon.js';

/** How a server listens when systemd passed no listener of its name: a port, a path, or net's listen options. */
export type StoredListenerFallback = ServerListen;

/** One listener: the server, its name in systemd (FileDescriptorName=, FDNAME=), and what to listen on otherwise. */
export interface StoredListenerSpec {
  server: Server;
  name: string;
  fallback?: StoredListenerFallback;
}

export interface ListenStoredOptions {
  /** How long in-flight requests may take after SIGTERM, in ms (default 10000); then their connections are destroyed. */
  drainTimeout?: number;
  /** Exit the process (code 0) once drained. Default true. */
  exit?: boolean;
  /** Drain on SIGTERM (what `systemctl stop` and `restart` send). Default true. */
  handleSigterm?: boolean;
  /** Send READY=1 once every server listens and is stored (Type=notify). Default true. */
  ready?: boolean;
  /**
   * What systemd passed, if you called listenFds() yourself; fds whose name no
   * spec uses stay yours. By default listenFds() is called here, and fds whose
   * name no spec uses are closed (the manager keeps its own copies).
   */
  fds?: ListenFd[];
}

export interface StoredListenersEvents {
  /** SIGTERM (or drain()): we stopped accepting; what was still running. */
  draining: [state: DrainState];
  drained: [result: DrainResult];
}

function checkSpecs(specs: unknown): StoredListenerSpec[] {
  if (!Array.isArray(specs) || specs.length === 0) throw invalidArgValue('listeners', 'must be a non-empty array', specs);
  const names = new Set<string>();
  return specs.map((spec: unknown, i) => {
    if (spec === null || typeof spec !== 'object') throw invalidArgType(`listeners[${i}]`, 'of type object', spec);
    const { server, name, fallback } = spec as Partial<StoredListenerSpec>;
    if (server === null || typeof server !== 'object' || typeof server.listen !== 'function') {
      throw invalidArgType(`listeners[${i}].server`, 'a net.Server (or http.Server)', server);
    }
    if (server.listening) throw invalidArgValue(`listeners[${i}].server`, 'must not be listening yet', server);
    checkFdName(name, `listeners[${i}].name`);
    if (names.has(name!)) throw invalidArgValue(`listeners[${i}].name`, 'is used twice', name);
    names.add(name!);
    if (fallback !== undefined && (fallback === null || !['number', 'string', 'object'].includes(typeof fallback))) {
      throw invalidArgType(`listeners[${i}].fallback`, 'a port, a path or listen options', fallback);
    }
    return { server, name: name!, ...(fallback !== undefined ? { fallback } : {}) };
  });
}

// StoredListeners' constructor is private: its static block hands these to
// listenStored, the one way to make one.
let create: (specs: StoredListenerSpec[], inherited: string[], stored: boolean, timeout: number, exit: boolean) => StoredListeners;
let handleSigterm: (service: StoredListeners) => void;

/** The listeners of a service whose listening sockets live in systemd's fd store. */
export class StoredListeners extends EventEmitter<StoredListenersEvents> {
  /** Names of the listeners systemd passed (from a socket unit or the fd store); the others listen anew. */
  readonly inherited: readonly string[];
  /** Whether the listeners went to the fd store (false outside systemd: no NOTIFY_SOCKET). */
  readonly stored: boolean;
  #servers: Drainer;
  #draining = false;
  #drain: Promise<DrainResult> | null = null;
  #timeout: number;
  #exit: boolean;
  #onSigterm: (() => void) | null = null;

  static {
    create = (specs, inherited, stored, timeout, exit) => new StoredListeners(specs, inherited, stored, timeout, exit);
    handleSigterm = (service) => service.#handleSigterm();
  }

  /** Use listenStored. */
  private constructor(specs: StoredListenerSpec[], inherited: string[], stored: boolean, timeout: number, exit: boolean) {
    super();
    this.inherited = inherited;
    this.stored = stored;
    this.#timeout = timeout;
    this.#exit = exit;
    this.#servers = new Drainer(() => this.#draining);
    for (const { server, name } of specs) this.#servers.add(server, name);
  }

  #handleSigterm(): void {
    this.#onSigterm = () => {
      this.drain().catch(() => undefined);
    };
    process.once('SIGTERM', this.#onSigterm);
  }

  /** True once draining started. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Stop accepting (closing only this process's copies: the store keeps the
   * sockets), let in-flight requests finish (HTTP responses say "Connection:
   * close"), destroy what is left after drainTimeout; then exit(0) unless
   * `exit: false`. What SIGTERM calls.
   */
  drain(): Promise<DrainResult> {
    this.#drain ??= this.#run();
    return this.#drain;
  }

  async #run(): Promise<DrainResult> {
    this.#draining = true;
    this.#removeHandler();
    await notify('STOPPING=1').catch(() => false);
    const result = await this.#servers.drain(this.#timeout, (state) => this.emit('draining', state));
    this.emit('drained', result);
    if (this.#exit) setImmediate(() => process.exit(0));
    return result;
  }

  #removeHandler(): void {
    if (this.#onSigterm) process.off('SIGTERM', this.#onSigterm);
    this.#onSigterm = null;
  }

  /** Stop handling SIGTERM; the servers are left alone. */
  close(): void {
    this.#removeHandler();
  }
}

/**
 * Serve across `systemctl restart` without refusing a connection. For each
 * listener: take the fd systemd passed under `name` (a socket unit's
 * FileDescriptorName=, or the fd store), or else listen on `fallback`; then
 * keep it in the fd store under `name` (FDSTORE=1, FDNAME=name; needs
 * FileDescriptorStoreMax= of at least the number of listeners; one passed by
 * systemd is removed from the store and stored again, so that the store holds
 * one copy of it), send READY=1,
 * and on SIGTERM drain and exit. A listener that came from a socket unit is
 * stored too, so it outlives the socket unit. Outside systemd it just listens
 * (and still drains on SIGTERM).
 *
 *     const service = await listenStored(http.createServer(app), 'http', 8080);
 *
 * Throws TypeError/RangeError for bad arguments before anything happens,
 * and ERR_FDPASS_BAD_SOCKET when an fd systemd passed is not a listening
 * stream socket. Whatever fails (listening, storing, READY=1), the servers
 * it made listen are closed, and the fds it took, before the error surfaces.
 */
export async function listenStored(
  server: Server,
  name: string,
  fallback?: StoredListenerFallback,
  options?: ListenStoredOptions,
): Promise<StoredListeners>;
export async function listenStored(listeners: StoredListenerSpec[], options?: ListenStoredOptions): Promise<StoredListeners>;
export async function listenStored(
  first: Server | StoredListenerSpec[],
  nameOrOptions?: string | ListenStoredOptions,
  fallback?: StoredListenerFallback,
  options?: ListenStoredOptions,
): Promise<StoredListeners> {
  let specs: StoredListenerSpec[];
  let opts: ListenStoredOptions | undefined;
  if (Array.isArray(first)) {
    specs = checkSpecs(first);
    opts = nameOrOptions as ListenStoredOptions | undefined;
  } else {
    specs = checkSpecs([{ server: first, name: nameOrOptions, ...(fallback !== undefined ? { fallback } : {}) }]);
    opts = options;
  }
  opts ??= {};
  if (opts === null || typeof opts !== 'object') throw invalidArgType('options', 'of type object', opts);
  const timeout = opts.drainTimeout ?? 10_000;
  if (typeof timeout !== 'number') throw invalidArgType('options.drainTimeout', 'of type number', timeout);
  if (!Number.isInteger(timeout) || timeout < 0) throw outOfRange('options.drainTimeout', 'an integer >= 0', timeout);
  for (const key of ['exit', 'handleSigterm', 'ready'] as const) {
    if (opts[key] !== undefined && typeof opts[key] !== 'boolean') throw invalidArgType(`options.${key}`, 'of type boolean', opts[key]);
  }
  if (opts.fds !== undefined && !Array.isArray(opts.fds)) throw invalidArgType('options.fds', 'an array from listenFds()', opts.fds);
  const passed = opts.fds ?? listenFds();
  const ours = opts.fds === undefined;
  // Several fds may carry one name: a socket unit's and the store's copy of
  // the same socket. The first serves; the other copies are closed.
  const byName = new Map<string, number[]>();
  for (const { fd, name } of passed) byName.set(name, [...(byName.get(name) ?? []), fd]);
  const claimed = new Set(specs.map((s) => s.name));
  const inherited: string[] = [];
  // Servers this call made listen: each owns its fd from then on, and is
  // closed (its fd with it, at once) if anything after fails, storing too.
  const listening: Server[] = [];
  let service: StoredListeners | undefined;
  try {
    for (const spec of specs) {
      const fds = byName.get(spec.name);
      if (fds !== undefined) {
        byName.delete(spec.name);
        const [fd, ...copies] = fds;
        closeFds(copies);
        await serverFromFd(fd!, spec.server);
        inherited.push(spec.name);
      } else {
        if (spec.fallback === undefined) {
          throw invalidArgValue('fallback', `is needed: systemd passed no listener named "${spec.name}"`, undefined);
        }
        await listenOn(spec.server, spec.fallback);
      }
      listening.push(spec.server);
    }
    // Store every listener, also one systemd passed, so that a socket unit's
    // listener outlives the socket unit. One that systemd passed may be in the
    // store already: systemd 252 checks FileDescriptorStoreMax= before it
    // notices a copy it holds, so a plain second FDSTORE with a full store logs
    // "Cannot store more fds" and drops it. Remove the name first, then store:
    // exactly one copy per name, whichever way it came.
    let stored = true;
    for (const spec of specs) {
      if (inherited.includes(spec.name)) await removeStoredFds(spec.name);
      stored = (await storeFds(spec.name, [spec.server])) && stored;
    }
    service = create(specs, inherited, stored, timeout, opts.exit ?? true);
    if (opts.handleSigterm ?? true) handleSigterm(service);
    if (opts.ready ?? true) await notify('READY=1');
  } catch (err) {
    service?.close();
    for (const s of listening) s.close();
    // The fds passed for listeners not reached yet are ours too: close them.
    for (const name of claimed) closeFds(byName.get(name) ?? []);
    throw err;
  } finally {
    // Fds no listener claims: closed when we took them from the environment
    // (the manager keeps its own copies), left to the caller who passed them.
    if (ours) for (const [name, fds] of byName) if (!claimed.has(name)) closeFds(fds);
  }
  return service;
}
