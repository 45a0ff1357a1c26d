// ClusterPrimary's options and events (what PrimaryOptions and
// ClusterPrimaryEvents promise), and the check of the options: bad ones throw
// before anything is opened.
import { invalidArgType, invalidArgValue, outOfRange } from '../internal.js';
import { checkListenOptions, type ClusterListenOptions } from './listen.js';

/** A worker process the primary started: a node:cluster Worker or a ChildProcess. */
export interface ForkedWorker {
  once(event: 'exit', listener: (...args: unknown[]) => void): unknown;
  /** A ChildProcess's pid: reload() knows its replacement by it. */
  readonly pid?: number | undefined;
  /** A node:cluster Worker's process, for its pid. */
  readonly process?: { readonly pid?: number | undefined };
}

export interface PrimaryOptions {
  /** Where to accept: one address or several (each with its own name). */
  listen: ClusterListenOptions | readonly ClusterListenOptions[];
  /**
   * 'round-robin' (default): the primary accepts and hands each connection over, in turn.
   * 'least-loaded': the same, to the worker with the fewest open connections (as workers report them).
   * 'reuseport': each worker accepts from its own socket of a SO_REUSEPORT group that the primary
   * made and passed to it, and the kernel spreads connections over them by address hash: the
   * fastest for short connections, as no connection goes through the primary. The primary keeps
   * every socket and serves the queue of a worker that died or closed until another takes it
   * over. TCP listeners by port only; the others are handed out round robin.
   */
  schedule?: 'round-robin' | 'least-loaded' | 'reuseport';
  /**
   * Starts one worker, e.g. () => cluster.fork(), or (env) => fork('worker.js', { env: { ...process.env, ...env } }).
   * `env` is what the worker needs to find this primary. Without `fork`, start workers yourself.
   */
  fork?: (env: Readonly<Record<string, string>>) => ForkedWorker;
  /** How many workers `fork` starts; default 2. */
  workers?: number;
  /** Start a new worker when one started by `fork` exits (a second later if it lived less than a second); default true. */
  respawn?: boolean;
  /** Connections handed to a worker and not yet acknowledged, at most; default 1024. Beyond it the kernel's backlog holds them. */
  maxUnacked?: number;
  /** Set process.env.FDPASS_CLUSTER so that every child started from now on finds this primary; default true. */
  setEnv?: boolean;
  /**
   * The abstract socket name workers connect to (their FDPASS_CLUSTER); default a random one. Give a
   * fixed one when the workers are not started from this process, as in PM2's cluster mode (set
   * FDPASS_CLUSTER to it in their environment). Only processes of this uid may connect.
   */
  channel?: string;
}

/** A worker connected to the primary. */
export interface ClusterWorkerInfo {
  pid: number;
  /** Connections this worker acknowledged since it connected. */
  connections: number;
  /** Its open connections as it last reported them, plus those not yet acknowledged. */
  load: number;
}

/** A worker whose channel closed (it exited, or closed every server). */
export interface ClusterWorkerExit {
  pid: number;
  /** Connections it held as of its last acknowledgement or report (lost if it died). */
  inFlight: number;
  /** Connections it never acknowledged, given to other workers. */
  redispatched: number;
}

export interface ClusterPrimaryEvents {
  /** A worker connected. */
  worker: [worker: ClusterWorkerInfo];
  /** A worker's server now takes the connections of listener `name`. */
  listening: [worker: ClusterWorkerInfo, name: string];
  workerExit: [exit: ClusterWorkerExit];
  error: [error: Error];
  close: [];
}

/** The options of ClusterPrimary.start(), checked: the listeners' options, and how many workers to fork. */
export function checkPrimaryOptions(options: PrimaryOptions): { checked: ReturnType<typeof checkListenOptions>[]; workers: number } {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const list = (Array.isArray(options.listen) ? options.listen : [options.listen]) as unknown[];
  if (list.length === 0) throw invalidArgValue('options.listen', 'must name at least one address', options.listen);
  const checked = list.map(checkListenOptions);
  const names = checked.map((o) => o.name ?? 'default');
  if (new Set(names).size !== names.length) throw invalidArgValue('options.listen', 'must have a distinct name per address', names);
  if (options.schedule !== undefined && !['round-robin', 'least-loaded', 'reuseport'].includes(options.schedule)) {
    throw invalidArgValue('options.schedule', "must be 'round-robin', 'least-loaded' or 'reuseport'", options.schedule);
  }
  if (options.fork !== undefined && typeof options.fork !== 'function') throw invalidArgType('options.fork', 'a function', options.fork);
  const workers = options.workers ?? 2;
  if (typeof workers !== 'number' || !Number.isInteger(workers) || workers < 0 || workers > 1024) {
    throw outOfRange('options.workers', 'an integer from 0 to 1024', workers);
  }
  const maxUnacked = options.maxUnacked ?? 1024;
  if (typeof maxUnacked !== 'number' || !Number.isInteger(maxUnacked) || maxUnacked < 1) {
    throw outOfRange('options.maxUnacked', 'an integer >= 1', maxUnacked);
  }
  if (options.channel !== undefined && (typeof options.channel !== 'string' || options.channel === '')) {
    throw invalidArgType('options.channel', 'a non-empty string', options.channel);
  }
  return { checked, workers };
}
