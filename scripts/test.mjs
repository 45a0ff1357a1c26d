#!/usr/bin/env node
// Runs every compiled test file with Node's built-in test runner, with the
// Node that runs this script (so CI can run the same suite on Node 20 and 24).
// Arguments filter test files by substring: node scripts/test.mjs socket
//
// Tests whose real peer or privilege is missing skip themselves (test/tools.ts)
// and log why; the run ends with one summary of what was skipped and the
// apt-get line that would run it. Under CI (CI=true or CI=1, the rule of
// test/tools.ts) such a skip fails the run. Skips inside the conformance
// suite are subtests of test/conformance/conformance.test.ts, so they are counted here too.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// An argument that is a .js file runs that file (test/scripts/runner.test.ts runs its fixtures so).
const args = process.argv.slice(2);
const given = args.filter((a) => a.endsWith('.js') && existsSync(a));
const filters = args.filter((a) => !given.includes(a));
const files = [
  ...given,
  ...(filters.length === 0 && given.length > 0 ? [] : find('build-test/test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))),
];
if (files.length === 0) {
  console.error('no test files found (run "npm test", which compiles them first)');
  process.exit(1);
}

// One folder per run: the logs, and the run's TMPDIR, so that what the tests
// leave behind (folders, processes) is seen, reported and removed.
const logDir = mkdtempSync(join(tmpdir(), 'fdpass-testrun-'));
const runTmp = join(logDir, 'tmp');
mkdirSync(runTmp);
chmodSync(logDir, 0o755); // tests run peers as uid 65534
chmodSync(runTmp, 0o1777);
const skipLog = join(logDir, 'needs.jsonl'); // written by test/tools.ts: reason -> missing tools
const skipped = join(logDir, 'skipped.jsonl'); // written by the reporter: every skipped test, every Node warning
const reporter = fileURLToPath(new URL('test-reporter.mjs', import.meta.url));
let status;
try {
  const r = spawnSync(
    process.execPath,
    [
      '--test',
      '--test-concurrency=1',
      // A bound for a hung test, not a speed limit: Node 20 applies it to a
      // whole file, and the package tests (npm pack with every prebuild, the
      // arm64 and musl runtimes under qemu) take up to two minutes alone.
      '--test-timeout=300000',
      // A file whose failed test left a handle open ends anyway; test/helpers.ts
      // then removes its temp dirs and kills its children at exit.
      '--test-force-exit',
      `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
      '--test-reporter-destination=stdout',
      `--test-reporter=${reporter}`,
      '--test-reporter-destination=stdout', // it yields nothing: it writes FDPASS_REPORT_LOG itself (a file destination is fsynced at exit, and /dev/null refuses fsync on Node 22)
      ...files,
    ],
    { stdio: 'inherit', env: { ...process.env, FDPASS_SKIP_LOG: skipLog, FDPASS_REPORT_LOG: skipped, FDPASS_TEST_RUN: logDir, TMPDIR: runTmp } },
  );
  status = r.status ?? 1;
  status = summarize(status);
  leftovers();
} finally {
  rmSync(logDir, { recursive: true, force: true });
}
process.exit(status);

function lines(file) {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

/** Print one summary of the skipped tests; returns the exit status. */
function summarize(status) {
  const needsByReason = new Map(lines(skipLog).map((e) => [e.reason, e.needs]));
  const events = lines(skipped);
  const warnings = events.filter((e) => e.warning !== undefined);
  if (warnings.length > 0) {
    // No warning from Node in a passing run: each one is a bug (ours or a test's).
    console.log(`\n== Node printed ${warnings.length} warning(s); a run with warnings fails:`);
    for (const w of warnings) console.log(`    ${w.file ? relative(join(process.cwd(), 'build-test'), w.file) : '?'}: ${w.warning}`);
    if (status === 0) status = 1;
  }
  const tests = events.filter((e) => e.warning === undefined);
  if (tests.length === 0) return status;
  const perNeed = new Map(); // need -> { why, pkg, count }
  const pkgs = new Set();
  let ci = 0;
  console.log(`\n== ${tests.length} skipped (tests or whole suites):`);
  for (const t of tests) {
    const needs = needsByReason.get(t.reason);
    const file = t.file ? relative(join(process.cwd(), 'build-test'), t.file) : '?';
    const why = needs ? `needs ${needs.map((n) => n.need).join(', ')}` : t.reason || 'no reason given';
    console.log(`    ${file}: ${JSON.stringify(t.name)} (${why})`);
    if (!needs) continue;
    if (t.reason.startsWith('CI=true')) ci++;
    for (const n of needs) {
      const e = perNeed.get(n.need) ?? { why: n.why, pkg: n.pkg, count: 0 };
      e.count++;
      perNeed.set(n.need, e);
      if (n.pkg) pkgs.add(n.pkg);
    }
  }
  if (perNeed.size > 0) {
    console.log('  What was missing:');
    for (const [need, e] of perNeed) console.log(`    ${need}: ${e.why}; ${e.count} skipped${e.pkg ? ` (package ${e.pkg})` : ''}`);
    console.log('  To run them all:');
    if (pkgs.size > 0) console.log(`    apt-get install -y ${[...pkgs].sort().join(' ')}`);
    if (perNeed.has('root')) console.log('    and run the tests as root');
  }
  if (ci > 0) {
    console.log(`CI=true: ${ci} could not run for a missing tool or privilege, so the run fails.`);
    return status === 0 ? 1 : status;
  }
  return status;
}

/** Report (and clear) folders and processes the tests left behind. */
function leftovers() {
  const dirs = readdirSync(runTmp);
  const procs = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let env;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!env.includes(`FDPASS_TEST_RUN=${logDir}`)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      // gone meanwhile
    }
    procs.push(`${pid} ${cmd}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  if (dirs.length > 0) console.log(`\n== the tests left ${dirs.length} folder(s) in their TMPDIR (removed now): ${dirs.join(', ')}`);
  if (procs.length > 0) console.log(`\n== the tests left ${procs.length} process(es) running (killed now):\n    ${procs.join('\n    ')}`);
}
