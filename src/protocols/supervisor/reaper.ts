// Reaping orphans, as a PID 1 must: a process whose parent died is reparented
// to PID 1 (or to the nearest subreaper), and stays a zombie until that one
// waits for it. child_process waits only for the children it spawned, by pid;
// a wait for any child (waitpid(-1)) would take those from under it. So on
// SIGCHLD the reaper lists this process's children (/proc/self/task/*/children)
// and waits, one by one and without blocking, for those it was not told about.
import { readdirSync, readFileSync } from 'node:fs';
import { native } from '../internal.js';

const statusBuf = new Int32Array(1);

export class Reaper {
  /** Pids spawned through child_process: never waited for here. */
  readonly #spawned: Set<number>;
  readonly #onChild = (): void => {
    this.reap();
  };
  #listening = false;

  constructor(spawned: Set<number>) {
    this.#spawned = spawned;
  }

  /** Start reaping on SIGCHLD. `subreaper`: also adopt orphaned descendants when not PID 1. */
  start(subreaper: boolean): void {
    if (subreaper && process.pid !== 1) native.setSubreaper();
    try {
      process.on('SIGCHLD', this.#onChild);
      this.#listening = true;
    } catch {
      // A runtime without SIGCHLD listeners: reap() is still called on each child exit.
    }
  }

  /** Wait for every exited child that is not child_process's; returns the pids reaped. */
  reap(): number[] {
    const reaped: number[] = [];
    for (const pid of children()) {
      if (this.#spawned.has(pid)) continue;
      if (native.waitpid(pid, statusBuf) === pid) reaped.push(pid);
    }
    return reaped;
  }

  stop(): void {
    if (this.#listening) process.off('SIGCHLD', this.#onChild);
    this.#listening = false;
  }
}

/** The pids of this process's children, from every thread's list. */
function children(): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tasks) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const p of text.split(' ')) if (p !== '' && p !== '\n') out.push(Number(p));
  }
  return out;
}
