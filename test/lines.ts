// Reading a child process's stdout as JSON lines, with a deadline, for tests
// that talk to real peers (python3 receivers, node fixtures, the CLI).
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Json = Record<string, unknown>;

/** A queue of the JSON lines a child prints on stdout (other lines are kept as { line }). */
export class JsonLines {
  readonly all: Json[] = [];
  #queue: Json[] = [];
  #waiters: { match: (j: Json) => boolean; resolve: (j: Json) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  #ended = false;
  #stderrWaiters: (() => void)[] = [];
  #listeners: ((j: Json) => void)[] = [];
  stderr = '';

  constructor(readonly child: ChildProcess) {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      let j: Json;
      try {
        const v: unknown = JSON.parse(line);
        j = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : { line };
      } catch {
        j = { line };
      }
      this.all.push(j);
      for (const fn of this.#listeners) fn(j);
      const i = this.#waiters.findIndex((w) => w.match(j));
      if (i >= 0) {
        const [w] = this.#waiters.splice(i, 1);
        clearTimeout(w!.timer);
        w!.resolve(j);
      } else this.#queue.push(j);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      for (const w of [...this.#stderrWaiters]) w();
    });
    child.on('exit', (code, signal) => {
      this.#ended = true;
      for (const w of [...this.#stderrWaiters]) w();
      for (const w of this.#waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`child exited (${code ?? signal}) while waiting; stderr: ${this.stderr}`));
      }
    });
  }

  /** The next line (already printed or to come) for which match is true. */
  next(match: (j: Json) => boolean = () => true, timeoutMs = 30_000): Promise<Json> {
    const i = this.#queue.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0]!);
    if (this.#ended) return Promise.reject(new Error(`child already exited; stderr: ${this.stderr}`));
    return new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        const k = this.#waiters.findIndex((w) => w.resolve === resolve);
        if (k >= 0) this.#waiters.splice(k, 1);
        reject(new Error(`no matching line within ${timeoutMs} ms; lines: ${JSON.stringify(this.all)}; stderr: ${this.stderr}`));
      }, timeoutMs);
      this.#waiters.push({ match, resolve, reject, timer });
    });
  }

  /** Call fn with every line from now on, as it comes (it is queued for next() too). */
  onLine(fn: (j: Json) => void): void {
    this.#listeners.push(fn);
  }

  /** Once stderr holds every one of `texts` (it rejects if the child exits first, or after timeoutMs). */
  stderrHas(texts: string[], timeoutMs = 30_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        const done = texts.every((t) => this.stderr.includes(t));
        if (!done && !this.#ended) return;
        this.#stderrWaiters = this.#stderrWaiters.filter((w) => w !== check);
        clearTimeout(timer);
        if (done) resolve();
        else reject(new Error(`child exited before its stderr said ${JSON.stringify(texts)}; stderr: ${this.stderr}`));
      };
      const timer = setTimeout(() => {
        this.#stderrWaiters = this.#stderrWaiters.filter((w) => w !== check);
        reject(new Error(`stderr did not say ${JSON.stringify(texts)} within ${timeoutMs} ms; stderr: ${this.stderr}`));
      }, timeoutMs);
      this.#stderrWaiters.push(check);
      check();
    });
  }

  /** The next line that has `key` equal to `value`. */
  event(key: string, value: unknown, timeoutMs?: number): Promise<Json> {
    return this.next((j) => j[key] === value, timeoutMs);
  }
}

/** Resolve with the exit code (or signal name) once the child has exited. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
    // A child that could not start (EACCES, ENOENT) emits 'error', never 'exit'.
    child.once('error', (err: Error & { code?: string }) => resolve(`spawn failed: ${err.code ?? err.message}`));
  });
}
