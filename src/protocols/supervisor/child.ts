// A process under supervision (Child: its state, timers and how it ended),
// and what starting one needs: where its command is, the exec shim, its exit
// status as a shell reports it.
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, FdPassError, Pidfd } from '../internal.js';

/** How a process ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A process under supervision. */
export class Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  mainPid: number;
  readonly startedAt = performance.now();
  state: 'starting' | 'ready' | 'stopping' | 'exited' = 'starting';
  exitStatus: ExitStatus | null = null;
  /** Resolves once: 'ready', or why it never will be. */
  readonly outcome = deferred<string>();
  readonly exited = deferred<ExitStatus>();
  readyTimer: NodeJS.Timeout | null = null;
  killTimer: NodeJS.Timeout | null = null;
  watchdogTimer: NodeJS.Timeout | null = null;
  watchdogMs = 0;
  /** How the spawned process ended, once it has (a main process may run on). */
  spawnedExit: ExitStatus | null = null;
  /** How the main process (MAINPID=) ended while the spawned one still ran. */
  mainExit: ExitStatus | null = null;
  /** The main process when MAINPID= named another one: its pidfd, watched for its exit. */
  #main: Pidfd | null = null;

  constructor(proc: ChildProcess, pid: number) {
    this.proc = proc;
    this.pid = pid;
    this.mainPid = pid;
  }

  get alive(): boolean {
    return this.state !== 'exited';
  }

  /** Whether a main process other than the spawned one runs. */
  get mainRuns(): boolean {
    return this.#main !== null;
  }

  /**
   * MAINPID=pid: from now on the service lives as long as that process (as
   * systemd has it). Its exit comes to onExit, with the status its pidfd
   * tells. A pidfd, not the pid: a pid may be reused once its process is
   * reaped, by us (a subreaper) or by init. False if it is gone already.
   */
  follow(pid: number, onExit: (status: ExitStatus) => void): boolean {
    this.#main?.close(); // its exited() rejects; ignored below
    this.#main = null;
    this.mainPid = this.pid;
    if (pid === this.pid) return true;
    let main: Pidfd;
    try {
      main = Pidfd.open(pid);
    } catch {
      return false;
    }
    this.#main = main;
    this.mainPid = pid;
    main.exited().then(
      (st) => {
        if (this.#main !== main) return;
        this.release();
        onExit({ pid, code: st.code, signal: st.signal });
      },
      () => undefined,
    );
    return true;
  }

  /** Signal the main process and the spawned one, each only while it runs (its pid cannot have been reused). */
  signal(signal: NodeJS.Signals): void {
    try {
      this.#main?.signal(signal);
    } catch {
      // gone already
    }
    if (this.spawnedExit) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // gone already
    }
  }

  /** Stop following the main process. */
  release(): void {
    this.#main?.close();
    this.#main = null;
    this.mainPid = this.pid;
  }

  clearTimers(): void {
    for (const t of [this.readyTimer, this.killTimer, this.watchdogTimer]) if (t) clearTimeout(t);
    this.readyTimer = this.killTimer = this.watchdogTimer = null;
  }
}

const SIGNALS = osConstants.signals as Record<string, number>;

/** 128 + the signal number for a signal, else the code: what a shell reports. */
export function exitCode(status: ExitStatus | null): number {
  if (!status) return 0;
  if (status.signal) return 128 + (SIGNALS[status.signal] ?? 0);
  return status.code ?? 0;
}

export function describeExit(s: ExitStatus): string {
  if (s.signal) return `was killed by ${s.signal}`;
  // A main process (MAINPID=) reaped by another, on a kernel before 6.15.
  return s.code === null ? 'ended (how, the kernel cannot tell)' : `exited with code ${s.code}`;
}

/** Where `command` is, as execvp would find it; ERR_FDPASS_NO_COMMAND if nowhere. */
export function resolveCommand(command: string, env: Readonly<Record<string, string | undefined>>, cwd: string): string {
  const candidates = command.includes('/')
    ? [resolve(cwd, command)]
    : (env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => resolve(cwd, d, command));
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {
      // not there, or not executable: the next one
    }
  }
  throw new FdPassError(
    ErrorCodes.NO_COMMAND,
    command.includes('/') ? `${command}: no such executable file` : `${command}: command not found on PATH (${env.PATH ?? ''})`,
  );
}

// The exec shim: LISTEN_PID must be the program's own pid, known only after
// fork. systemd sets it between fork and exec; child_process cannot, so a
// POSIX shell does it: `exec` keeps the shell's pid ($$) for the program.
// Where there is no shell, Node does it (exec-shim.ts, with the addon's
// execve), at the cost of one Node start per process.
const SHELL = '/bin/sh';

/** SHELL where it can run, else null: the shim. */
export function defaultShell(): string | null {
  try {
    accessSync(SHELL, fsConstants.X_OK);
    return SHELL;
  } catch {
    return null;
  }
}

/** The shim that does the shell's part without one (run by process.execPath). */
export const EXEC_SHIM = fileURLToPath(new URL('./exec-shim.js', import.meta.url));

/** The parent pid of `pid` (/proc/PID/stat), or 0. */
export function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name is in parentheses and may contain anything: skip past the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return 0;
  }
}

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

export function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? 'unknown';
}
