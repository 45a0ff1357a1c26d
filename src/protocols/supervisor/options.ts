// The supervisor's options and events (what SupervisorOptions and
// SupervisorEvents promise), and the check of its durations.
import { invalidArgType, invalidArgValue, outOfRange, type FdPassError } from '../internal.js';
import type { ExitStatus } from './child.js';
import { checkListenerSpec, type ListenerSpec } from './listeners.js';

/** How a process says it is ready: READY=1 on NOTIFY_SOCKET, or by staying alive for `delay` ms. */
export type ReadyMode = 'notify' | { delay: number };

/** When a process that exited is started again. */
export type RestartPolicy = 'always' | 'on-failure' | 'never';

export interface SupervisorOptions {
  /** The program: a path, or a name looked up on PATH. */
  command: string;
  args?: readonly string[];
  /** Listeners to open and pass, in order (fds 3..): specs like `8080`, `127.0.0.1:8080`, `unix:/run/app.sock=web`, or objects. */
  listeners?: readonly (ListenerSpec | string)[];
  /** Environment of the processes (default process.env); undefined values remove a variable. */
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
  /** Default 'notify'. */
  ready?: ReadyMode;
  /** How long a new process may take to be ready, in ms (default 60000); EXTEND_TIMEOUT_USEC= extends it. */
  readyTimeout?: number;
  /** How long a process may take to exit after SIGTERM before SIGKILL, in ms (default 10000). */
  drainTimeout?: number;
  /** WatchdogSec=: once ready, a process must send WATCHDOG=1 this often (ms), else it is killed (SIGABRT) and restarted. 0 (default): off, unless it sets WATCHDOG_USEC= itself. */
  watchdog?: number;
  /** Default 'always'. */
  restart?: RestartPolicy;
  /** First delay before a restart after a crash, in ms (default 100); it doubles up to restartDelayMax. */
  restartDelay?: number;
  /** Default 30000. */
  restartDelayMax?: number;
  /** The most fds the fd store holds (FileDescriptorStoreMax=), default 64, at most 4096. */
  fdStoreMax?: number;
  /** Reload when a file under these paths changes. */
  watch?: readonly string[];
  /** Changes within this many ms make one reload (default 200). */
  watchDebounce?: number;
  /** A Unix socket path for control commands (`reload`, `status`), mode 0600. */
  control?: string;
  /** Stdin, stdout and stderr of the processes (default 'inherit'). */
  stdio?: 'inherit' | 'ignore';
  /**
   * The POSIX shell that sets LISTEN_PID (and WATCHDOG_PID) to the program's
   * own pid and then execs it: default '/bin/sh' where it exists. null, the
   * default without one (a container image without a shell): Node runs a
   * small shim of fdpass that sets them and calls execve(2) itself.
   */
  shell?: string | null;
  /** Reap orphaned processes (default: when this process is PID 1); when not PID 1, become their subreaper. */
  reapOrphans?: boolean;
  /** One line per event (default: none). */
  log?: ((line: string) => void) | null;
}

export interface SupervisorEvents {
  /** A process was started. */
  spawn: [pid: number];
  /** A process is ready (READY=1, or its delay passed) and serves. */
  ready: [pid: number];
  /** A process exited. */
  exit: [status: ExitStatus];
  /** A reload finished: `pid` serves, the old one stops. */
  reloaded: [pid: number];
  /** A reload failed; the old process (if any) still serves. */
  reloadFailed: [error: FdPassError];
  /** STATUS= from a process. */
  status: [pid: number, status: string];
  /** A notification was refused: the reason. */
  refused: [pid: number, reason: string];
  /** The supervisor stopped: every process exited and the listeners are closed. */
  stopped: [status: ExitStatus | null];
}

export function checkMs(value: unknown, name: string, def: number, min = 0): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > 2 ** 31 - 1) throw outOfRange(name, `an integer from ${min} to 2147483647`, value);
  return value;
}

/** The options of Supervisor.start(), checked before anything opens: the listeners' specs. */
export function checkSupervisorOptions(options: SupervisorOptions): ListenerSpec[] {
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const { command, args } = options;
  if (typeof command !== 'string' || command === '') throw invalidArgValue('options.command', 'must be a non-empty string', command);
  if (args !== undefined && (!Array.isArray(args) || args.some((a) => typeof a !== 'string'))) {
    throw invalidArgType('options.args', 'an array of strings', args);
  }
  const listenerList = options.listeners ?? [];
  if (!Array.isArray(listenerList)) throw invalidArgType('options.listeners', 'an array', listenerList);
  const specs = listenerList.map((s, i) => checkListenerSpec(s, i));
  const ready = options.ready ?? 'notify';
  if (ready !== 'notify' && (ready === null || typeof ready !== 'object'))
    throw invalidArgValue('options.ready', "must be 'notify' or { delay }", ready);
  if (typeof ready === 'object') checkMs(ready.delay, 'options.ready.delay', 0);
  if (options.restart !== undefined && !['always', 'on-failure', 'never'].includes(options.restart)) {
    throw invalidArgValue('options.restart', "must be 'always', 'on-failure' or 'never'", options.restart);
  }
  const storeMax = options.fdStoreMax ?? 64;
  if (typeof storeMax !== 'number' || !Number.isInteger(storeMax) || storeMax < 0 || storeMax > 4096) {
    throw outOfRange('options.fdStoreMax', 'an integer from 0 to 4096', storeMax);
  }
  if (options.watch !== undefined && (!Array.isArray(options.watch) || options.watch.some((p) => typeof p !== 'string'))) {
    throw invalidArgType('options.watch', 'an array of paths', options.watch);
  }
  if (options.log !== undefined && options.log !== null && typeof options.log !== 'function')
    throw invalidArgType('options.log', 'a function', options.log);
  if (options.shell !== undefined && options.shell !== null && (typeof options.shell !== 'string' || options.shell === ''))
    throw invalidArgType('options.shell', 'a non-empty string or null', options.shell);
  return specs;
}
