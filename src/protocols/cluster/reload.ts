// ClusterPrimary.reload(): a rolling replacement of the workers, without a
// gap. For each worker: `fork` starts a new one, which connects and serves
// (under 'reuseport' on the old one's socket of the group: both accept from
// its one queue for a while, so nothing queued there is lost); only once it
// serves every listener the old one served does the old one get no more
// connections and a 'D' (drain): its servers close, its open connections
// finish, and its channel ends when the last one did. Then SIGTERM (which
// ends a process with nothing left to do), and SIGKILL if it lingers.
//
// The primary's state stays in primary.ts; this file sees it only through
// ReloadHost, and follows the workers by the primary's public events.
import { EventEmitter } from 'node:events';
import { ErrorCodes, FdPassError, invalidArgType, outOfRange } from '../internal.js';

export interface ReloadOptions {
  /** Workers replaced at the same time; default 1. */
  concurrency?: number;
  /** How long a new worker may take to serve every listener its predecessor served, in ms; default 30000. */
  readyTimeout?: number;
  /** How long an old worker may take to finish its connections before SIGTERM (and then SIGKILL), in ms; default 10000. */
  drainTimeout?: number;
}

export interface DrainOptions {
  /** How long each worker may take to finish its connections before SIGTERM (and then SIGKILL), in ms; default 10000. */
  drainTimeout?: number;
}

/** ClusterPrimary.drain()'s options, checked: the drainTimeout. */
export function checkDrainOptions(options: DrainOptions): number {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  return checkInt(options.drainTimeout, 'options.drainTimeout', 10_000, 0);
}

/** What the reload may see and do of the primary (primary.ts makes it). */
export interface ReloadHost {
  canFork(): boolean;
  closed(): boolean;
  /** The pids of the workers `fork` started that have not exited. */
  forked(): number[];
  /** The connected workers that serve something (not draining), with the names of the listeners each serves. */
  workers(): { pid: number; serves: string[] }[];
  /**
   * Start a worker with `fork`, not respawned if it exits, which takes over
   * the group sockets of `heirOf` when it serves. Its pid; null if `fork`
   * threw (the primary emitted it), undefined if it gave no pid.
   */
  fork(heirOf: number): number | null | undefined;
  /** Resolves when a worker `fork` started exits; null if it is gone already or `fork` did not start it. */
  exited(pid: number): Promise<void> | null;
  /** The replacement serves: from now on it is a worker like any (respawned if it exits). */
  adopt(pid: number): void;
  /** No more connections for `pid`, and tell it to drain (never respawned). False if it has no channel. */
  drain(pid: number): boolean;
}

interface Resolved {
  concurrency: number;
  readyTimeout: number;
  drainTimeout: number;
}

/** The primary's events as the reload follows them. */
type Events = EventEmitter<{
  listening: [worker: { pid: number }, name: string];
  workerExit: [exit: { pid: number }];
  close: [];
}>;

function checkInt(value: unknown, name: string, def: number, min: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min) throw outOfRange(name, `an integer >= ${min}`, value);
  return value;
}

function failed(message: string, cause?: unknown): FdPassError {
  return new FdPassError(ErrorCodes.RELOAD_FAILED, `fdpass/cluster: reload failed: ${message}`, cause === undefined ? {} : { cause });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

export class Reloader {
  readonly #events: Events;
  readonly #host: ReloadHost;
  #running: Promise<number[]> | null = null;
  #queued: Promise<number[]> | null = null;

  constructor(events: EventEmitter, host: ReloadHost) {
    this.#events = events as unknown as Events;
    this.#host = host;
  }

  reload(options: ReloadOptions): Promise<number[]> {
    let resolved: Resolved;
    try {
      if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
      resolved = {
        concurrency: checkInt(options.concurrency, 'options.concurrency', 1, 1),
        readyTimeout: checkInt(options.readyTimeout, 'options.readyTimeout', 30_000, 1),
        drainTimeout: checkInt(options.drainTimeout, 'options.drainTimeout', 10_000, 0),
      };
      if (!this.#host.canFork()) throw failed('the primary has no fork option to start new workers with');
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.#queued) return this.#queued;
    const running = this.#running;
    if (running) {
      const queued = running
        .catch(() => undefined)
        .then(() => {
          this.#queued = null;
          return this.#start(resolved);
        });
      this.#queued = queued;
      return queued;
    }
    return this.#start(resolved);
  }

  /** Once no reload runs or waits. */
  async idle(): Promise<void> {
    while (this.#running || this.#queued) await (this.#queued ?? this.#running)!.catch(() => undefined);
  }

  /** Drain and stop every worker (ClusterPrimary.drain()); resolves once they have exited. */
  async drainAll(drainTimeout: number): Promise<void> {
    const pids = new Set([...this.#host.workers().map((w) => w.pid), ...this.#host.forked()]);
    await Promise.all([...pids].map((pid) => this.#retire(pid, drainTimeout)));
  }

  #start(o: Resolved): Promise<number[]> {
    const run: Promise<number[]> = this.#run(o).finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }

  async #run(o: Resolved): Promise<number[]> {
    if (this.#host.closed()) throw failed('the primary is closed');
    const old = this.#host.workers();
    const pids: number[] = [];
    const retiring: Promise<void>[] = [];
    let next = 0;
    let error: Error | null = null;
    const lane = async (): Promise<void> => {
      while (error === null && next < old.length) {
        const worker = old[next++]!;
        // Gone meanwhile (a crash: the primary respawns it as usual).
        if (!this.#host.workers().some((w) => w.pid === worker.pid)) continue;
        try {
          pids.push(await this.#replace(worker, o));
        } catch (err) {
          error ??= err as Error;
          return;
        }
        retiring.push(this.#retire(worker.pid, o.drainTimeout));
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, Math.max(old.length, 1)) }, lane));
    await Promise.all(retiring);
    if (error) throw error;
    return pids;
  }

  /** Start the replacement of `old` and wait until it serves what `old` serves; stop it again if it does not. */
  async #replace(old: { pid: number; serves: string[] }, o: Resolved): Promise<number> {
    if (this.#host.closed()) throw failed('the primary closed');
    const events = this.#events;
    const missing = new Set(old.serves);
    let pid: number | undefined;
    let settle!: (outcome: string | null) => void;
    const outcome = new Promise<string | null>((resolve) => (settle = resolve));
    const onListening = (worker: { pid: number }, name: string): void => {
      if (worker.pid !== pid) return;
      missing.delete(name);
      if (missing.size === 0) settle(null);
    };
    const onClose = (): void => settle('the primary closed');
    events.on('listening', onListening);
    events.on('close', onClose);
    const timer = setTimeout(() => settle(`it did not serve ${[...missing].join(', ')} within ${o.readyTimeout} ms`), o.readyTimeout);
    try {
      const started = this.#host.fork(old.pid);
      if (started === null) throw failed(`fork() threw: the new worker did not start; pid ${old.pid} still serves`);
      if (started === undefined) {
        throw failed(`fork() returned no pid (a ChildProcess or a node:cluster Worker has one); pid ${old.pid} still serves`);
      }
      pid = started;
      const exited = this.#host.exited(pid);
      void exited?.then(() => settle('it exited before it served'));
      const why = await outcome;
      if (why === null) {
        this.#host.adopt(pid);
        return pid;
      }
      // Whatever it took goes back to the old worker (or to the others), and it is stopped.
      if (this.#host.exited(pid)) await this.#retire(pid, o.drainTimeout);
      else this.#host.drain(pid);
      throw failed(`the new worker (pid ${pid}) ${why}; pid ${old.pid} still serves`);
    } finally {
      clearTimeout(timer);
      events.off('listening', onListening);
      events.off('close', onClose);
    }
  }

  /** Drain `pid`, SIGTERM it once its channel ended (or after drainTimeout), SIGKILL it drainTimeout later; resolves once it exited. */
  async #retire(pid: number, drainTimeout: number): Promise<void> {
    // Exited already, or not started by `fork`: then nothing tells of its exit; the signal is all.
    const exited = this.#host.exited(pid);
    const events = this.#events;
    let onExit!: (e: { pid: number }) => void;
    const drained = new Promise<void>((resolve) => {
      onExit = (e) => {
        if (e.pid === pid) resolve();
      };
    });
    events.on('workerExit', onExit);
    let timer: NodeJS.Timeout | undefined;
    const deadline = (): Promise<void> => new Promise((resolve) => (timer = setTimeout(resolve, drainTimeout)));
    try {
      if (this.#host.drain(pid)) await Promise.race([drained, exited ?? drained, deadline()]);
    } finally {
      events.off('workerExit', onExit);
      clearTimeout(timer);
    }
    signal(pid, 'SIGTERM');
    if (!exited) return;
    try {
      await Promise.race([exited, deadline()]);
    } finally {
      clearTimeout(timer);
    }
    if (this.#host.exited(pid)) {
      signal(pid, 'SIGKILL');
      await exited;
    }
  }
}
