// A test harness small enough to run on Node, Bun and Deno alike: node:assert
// only, no node:test. Tests register with test(name, fn); run.mjs runs them
// one after another, prints one TAP-like line each and exits 1 on a failure.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The runtime running this file: node, bun or deno. */
export const runtime = typeof process.versions.bun === 'string' ? 'bun' : typeof process.versions.deno === 'string' ? 'deno' : 'node';

export const tests = [];

// Every test checks something: run.mjs fails a test whose body ran no
// assertion. node:assert/strict's functions are counted (the .conf.mjs files
// assert with it; this patches the one shared object), and so is noLeak.
export const assertions = { count: 0 };
for (const [name, fn] of Object.entries(assert)) {
  if (typeof fn !== 'function' || name === 'AssertionError' || name === 'CallTracker' || name === 'strict') continue;
  assert[name] = function (...args) {
    assertions.count++;
    return fn.apply(this, args);
  };
}

/** "This is CI": CI=true or CI=1, the rule of test/tools.ts and scripts/test.mjs. CI has every tool. */
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Register a test. `only` restricts it to some runtimes (`why` says why);
 * `needs` names a missing tool and its install line: the test is skipped,
 * or fails under CI (CI=true or CI=1: CI has every tool).
 */
export function test(name, fn, { only, why, needs } = {}) {
  let skip = only && !only.includes(runtime) ? `not on ${runtime}: ${why}` : null;
  if (needs && inCI) fn = () => assert.fail(`CI=${process.env.CI} and ${needs}`);
  else if (needs) skip = needs;
  tests.push({ name, fn, skip });
}

/**
 * The argv that runs a script with this same runtime (and its flags). Under
 * an emulator (an arm64 Node in qemu-aarch64, which cannot exec an arm64
 * binary itself), FDPASS_CONFORMANCE_EMULATOR is its argv prefix, e.g.
 * "qemu-aarch64 -L /usr/aarch64-linux-gnu".
 */
export function runtimeArgv(script) {
  const emulator = (process.env.FDPASS_CONFORMANCE_EMULATOR ?? '').split(' ').filter(Boolean);
  if (runtime === 'deno') return [...emulator, process.execPath, 'run', '-A', '--node-modules-dir=manual', script];
  return [...emulator, process.execPath, script];
}

/**
 * Run `code` (an ES module) in a child process of this runtime, from a file
 * inside this directory so that 'fdpass' resolves as it does here. Resolves
 * with { code, signal, stdout, stderr }; kills the child after `timeout` ms.
 * `wrap(argv)` puts a program in front (systemd-socket-activate).
 * `onLine(line, 'stdout' | 'stderr')` is called with each line as it comes,
 * so that a test can wait for what the child says instead of for a while.
 */
export function runChild(code, { env = {}, timeout = 30_000, stdio, wrap = (argv) => argv, onLine } = {}) {
  const dir = new URL('.', import.meta.url).pathname;
  const file = join(dir, `.child-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  return import('node:fs').then(({ writeFileSync }) => {
    writeFileSync(file, code);
    const [cmd, ...args] = wrap(runtimeArgv(file));
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: stdio ?? ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      // Each complete line of `text` from offset `from` on.
      const newLines = (text, from, name) => {
        if (!onLine) return;
        const lines = text.slice(text.lastIndexOf('\n', from - 1) + 1).split('\n');
        lines.pop(); // not ended yet (or the empty tail after the last newline)
        for (const line of lines) onLine(line, name);
      };
      child.stdout?.on('data', (d) => {
        const from = stdout.length;
        stdout += d;
        newLines(stdout, from, 'stdout');
      });
      child.stderr?.on('data', (d) => {
        const from = stderr.length;
        stderr += d;
        newLines(stderr, from, 'stderr');
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeout);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        rmSync(file, { force: true });
        resolve({ code, signal, stdout, stderr, timedOut });
      });
    });
  });
}

/** The path of a program on PATH, or undefined. */
export const which = (name) =>
  (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((d) => join(d, name))
    .find((p) => existsSync(p));

/** The fds open in this process, with what they point to. */
export function openFds() {
  const out = new Map();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // the fd readdir used, closed meanwhile
    }
  }
  return out;
}

/**
 * Let the runtime open the fds it opens once per process, before any test
 * counts fds. Deno 2.9.6 opens a socketpair of its own (kept for good) about
 * 500 ms after it spawned its first child, by its own clock, whatever the
 * child does: in whichever test was running then, noLeak saw it as leaked (3
 * runs of 12 under load). So spawn a child here, and wait for that pair.
 * Resolves with a line to print, or null when there is nothing to wait for.
 */
export async function settleRuntime() {
  if (runtime !== 'deno') return null;
  const sockets = () => [...openFds()].filter(([, target]) => target?.startsWith('socket:')).map(([fd]) => fd);
  const before = new Set(sockets());
  const t0 = Date.now();
  await new Promise((resolve, reject) => spawn('true', { stdio: 'ignore' }).once('close', resolve).once('error', reject));
  // Nothing signals it: look every 10 ms, for up to 10 s.
  while (sockets().filter((fd) => !before.has(fd)).length < 2) {
    if (Date.now() - t0 > 10_000) return `# Deno opened no socketpair of its own within 10 s of its first child (counts may see it later)`;
    await new Promise((r) => setTimeout(r, 10));
  }
  return `# Deno opened its own socketpair ${Date.now() - t0} ms after its first child; fd counts start after it`;
}

/**
 * Run fn and check that /proc/self/fd is back where it was (the runc way),
 * once the event loop had a few turns (closes in flight settle).
 *
 * Bun 1.4.5 closes a child's stdio sockets a little after the child's
 * 'close' event and its streams' 'close' events (1-4 ms later, for about one
 * child in five here; the PtyStream test failed 1 run of 20 so), and nothing
 * signals it. So on Bun, and only for sockets, the count is looked
 * at again every 10 ms, for up to 10 s, before they are called leaked.
 */
export async function noLeak(fn) {
  const before = openFds();
  const result = await fn();
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  const leakedNow = () => [...openFds()].filter(([fd, target]) => before.get(fd) !== target);
  let leaked = leakedNow();
  const deadline = Date.now() + 10_000;
  while (runtime === 'bun' && leaked.length > 0 && leaked.every(([, t]) => t?.startsWith('socket:')) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
    leaked = leakedNow();
  }
  assertions.count++;
  if (leaked.length > 0) throw new Error(`leaked fds: ${leaked.map(([fd, t]) => `${fd} -> ${t}`).join(', ')}`);
  return result;
}

/** A fresh directory, removed by cleanup(). */
export function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), `fdpass-conf-${runtime}-`));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Wait for an event, rejecting on 'error'. */
export function once(emitter, event) {
  return new Promise((resolve, reject) => {
    const onError = (err) => {
      emitter.off(event, onEvent);
      reject(err);
    };
    const onEvent = (...args) => {
      emitter.off('error', onError);
      resolve(args);
    };
    emitter.once(event, onEvent);
    if (event !== 'error') emitter.once('error', onError);
  });
}
