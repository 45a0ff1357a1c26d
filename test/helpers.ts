// Shared test helpers: fd counting (the way runc's tests check for leaks),
// temp dirs, and building the C peers.
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { afterEach, beforeEach } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createNetServer } from 'node:net';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Open fds of this process, from /proc/self/fd. */
export function openFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((n) => Number.isInteger(n));
}

export function fdCount(): number {
  return openFds().length;
}

/** What an fd points at ('socket:[123]', 'anon_inode:...', a path). */
export function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

export function isOpen(fd: number): boolean {
  return fdTarget(fd) !== null;
}

/** Every open fd of this process and what it points at (the fd readdir itself used, closed meanwhile, left out). */
export function fdTable(): Map<number, string> {
  const table = new Map<number, string>();
  for (const fd of openFds()) {
    const target = fdTarget(fd);
    if (target !== null) table.set(fd, target);
  }
  return table;
}

/**
 * Run fn and assert that the open fds are the same afterwards, each number
 * pointing at the same thing: none leaked (a new number), none swapped (a
 * number open before that points elsewhere now: closed by mistake, a double
 * close say, and reused by a later open). An fd open before and closed
 * during fn is not counted: an earlier test's child's stdio closes on its
 * own schedule. The event loop gets a few turns first, so that closes in
 * flight settle.
 */
export async function noLeak<T>(fn: () => Promise<T>): Promise<T> {
  const before = fdTable();
  const r = await fn();
  const compare = async (): Promise<string[]> => {
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
    const after = fdTable();
    const leaked = [...after].filter(([fd]) => !before.has(fd));
    const swapped = [...after].filter(([fd, target]) => before.has(fd) && before.get(fd) !== target);
    return [
      ...leaked.map(([fd, target]) => `leaked ${fd} -> ${target}`),
      ...swapped.map(([fd, target]) => `swapped ${fd}: ${before.get(fd)} before, ${target} after`),
    ];
  };
  // The runtime's own threads open files for a moment (V8 reads
  // /proc/sys/vm/overcommit_memory, seen in a CI run): a difference counts
  // only if it is still there a few turns later, and in the same form.
  let problems = await compare();
  for (let i = 0; i < 3 && problems.length > 0; i++) {
    const again = await compare();
    problems = problems.filter((p) => again.includes(p));
  }
  checked();
  if (problems.length > 0) throw new Error(`fds not as before: ${problems.join('; ')}`);
  return r;
}

// What a test file leaves when a test fails before its own cleanup: temp
// dirs not yet removed, and child processes (with their children) still
// running. Both are cleared when the file's process exits, whatever failed.
const liveDirs = new Set<string>();
let exitHook = false;
function cleanupAtExit(): void {
  if (exitHook || !isMainThread) return;
  exitHook = true;
  process.on('exit', () => {
    killDescendants();
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
}

cleanupAtExit();

// No warning from Node in a passing run (DEP0112, "closed but not opened in
// unmanaged mode", ...): a warning in a test file fails that file.
// scripts/test.mjs also fails the run on warnings its files print, workers'
// included.
if (isMainThread) {
  process.on('warning', (w) => {
    process.exitCode = 1;
    console.error(`test/helpers.ts: Node printed a warning, so this test file fails: ${w.name}: ${w.message}`);
  });
}

// Every test checks something: a test whose body ran no assertion (and did
// not skip itself) fails, named. node:assert/strict's functions are counted
// (every test file imports that and this file; test/guarantees/conventions.test.ts
// checks both), and so is noLeak. The count goes to the test running and to
// the tests around it (a test whose subtests assert has asserted).
const checking: { asserts: number; skipped: boolean }[] = [];
/** Count one check for the tests running now. */
export function checked(): void {
  for (const frame of checking) frame.asserts++;
}
if (isMainThread) {
  const strict = assert as unknown as Record<string, unknown>;
  for (const [name, fn] of Object.entries(strict)) {
    if (typeof fn !== 'function' || name === 'AssertionError' || name === 'CallTracker' || name === 'strict') continue;
    strict[name] = function (this: unknown, ...args: unknown[]) {
      checked();
      return (fn as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
  let skipPatched = false;
  beforeEach((t) => {
    if (!skipPatched) {
      // A test that skips itself inside (tools.ts's have()) asserts nothing, rightly.
      skipPatched = true;
      const proto = Object.getPrototypeOf(t) as { skip: (...a: unknown[]) => void };
      const skip = proto.skip;
      proto.skip = function (this: unknown, ...args: unknown[]) {
        if (checking.length > 0) checking[checking.length - 1]!.skipped = true;
        return skip.apply(this, args);
      };
    }
    checking.push({ asserts: 0, skipped: false });
  });
  afterEach((t) => {
    const frame = checking.pop();
    if (frame && frame.asserts === 0 && !frame.skipped) {
      throw new Error(`test ${JSON.stringify(t.name)} ran no assertion: a test that checks nothing cannot fail`);
    }
  });
}

/** A fresh folder in tmpdir(); removed by cleanup(), or at the latest when this process exits. */
export function tempDir(prefix = 'fdpass-test-'): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  cleanupAtExit();
  return {
    dir,
    path: (name) => join(dir, name),
    cleanup: () => {
      liveDirs.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A temp dir removed when test `t` ends, passed or failed. */
export function testDir(t: { after: (fn: () => void) => void }, prefix?: string): ReturnType<typeof tempDir> {
  const d = tempDir(prefix);
  t.after(() => d.cleanup());
  return d;
}

/** SIGKILL `child` (if still running) when test `t` ends, passed or failed. */
export function killAtEnd<C extends ChildProcess>(t: { after: (fn: () => void) => void }, child: C): C {
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Pids of every process below `root` (children, their children, ...), from /proc. */
export function descendants(root = process.pid): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid)!.push(pid);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** SIGKILL every process below this one (a failed test's peers and theirs), all found before any is killed. */
export function killDescendants(): void {
  for (const pid of descendants()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Compile a C peer from test/peers (cached in build-test/peers). */
export function buildPeer(name: string): string {
  const src = join(repoRoot, 'test', 'peers', `${name}.c`);
  const out = join(repoRoot, 'build-test', 'peers', name);
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('mkdir', ['-p', dirname(out)]);
    execFileSync('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-O2', '-o', out, src], { stdio: 'inherit' });
  }
  return out;
}

/**
 * The first ```lang block after `heading` in `doc` (README.md, or a guide
 * such as docs/runc.md): what a test that runs a documented block with a real
 * peer runs. test/docs/code-blocks.test.ts checks that the block it hands to such a test
 * is this one, found the same way.
 */
export function docBlock(doc: string, heading: string, lang = 'js'): string {
  const text = readFileSync(join(repoRoot, doc), 'utf8');
  const at = text.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`${doc} has no heading ${JSON.stringify(heading)}`);
  const code = new RegExp(`^\`\`\`${lang}\n([^]*?)^\`\`\`$`, 'm').exec(text.slice(at))?.[1];
  if (code === undefined) throw new Error(`${doc} has no ${lang} block after ${JSON.stringify(heading)}`);
  return code;
}

export const python = 'python3';

/** Run python3 code; returns stdout. Throws with stderr on failure. */
export function runPython(code: string, args: string[] = []): string {
  const r = spawnSync(python, ['-c', code, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * Two round trips through fdpass's I/O core on a socketpair of our own: the
 * core has polled (and run what the polls said) at least twice since this
 * was called. An operation started before, whose fd had anything to say
 * (data, an end, an error), has heard it by then: what is still pending now
 * waits for something to happen, not for a turn of the loop.
 */
export async function ioTurns(): Promise<void> {
  const { FdSocket } = await import('fdpass');
  const [a, b] = FdSocket.pair('stream');
  try {
    for (let i = 0; i < 2; i++) {
      const got = b.recv();
      await a.send('turn');
      await got;
    }
  } finally {
    await a.close();
    await b.close();
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/**
 * Wait until `cond()` holds, where nothing signals the moment (another
 * thread or process gets there in its own time): checked every 10 ms, for up
 * to 60 s, half a test's time limit, so that a busy machine is not a failure
 * and a real one still names `what` did not happen.
 */
export async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within 60 s: ${what}`);
    await delay(10);
  }
}

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Force a full garbage collection (and let finalizers run). */
export async function collectGarbage(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((res) => setImmediate(res));
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a program that takes its port from the environment). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
