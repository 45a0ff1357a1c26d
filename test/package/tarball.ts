// The npm tarball of this checkout, packed once per test run and shared by
// the files under test/package (each file has its own time limit, and `npm
// pack` builds every prebuild through prepack), then installed with scripts
// off into an empty consumer project.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';

// The installed package must load its own prebuilt addon: drop the override
// that `npm run test:asan` sets for this checkout.
export const consumerEnv: NodeJS.ProcessEnv = { ...process.env };
delete consumerEnv.FDPASS_NATIVE;

export function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = consumerEnv): SpawnSyncReturns<string> {
  // npm 11 turns on Node's compile cache (module.enableCompileCache, Node >=
  // 22), which leaves a node-compile-cache folder in TMPDIR after the run.
  return spawnSync(cmd, args, { cwd, env: { ...env, NODE_DISABLE_COMPILE_CACHE: '1' }, encoding: 'utf8', timeout: 180_000 });
}

export function ok(r: SpawnSyncReturns<string>, what: string): string {
  // The failing cases of a conformance run first, with their stacks: a CI log
  // keeps the head and the tail of a long message, and cuts its middle.
  const failing = (r.stdout ?? '')
    .split('\n')
    .filter((l, i, all) => l.startsWith('not ok') || (l.startsWith('#   ') && all.slice(0, i).some((p) => p.startsWith('not ok'))));
  const head = failing.length > 0 ? `failing:\n${failing.join('\n')}\n--- the whole output:\n` : '';
  assert.equal(r.status, 0, `${what} failed (${r.status} ${r.signal ?? ''}):\n${head}${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export interface Packed {
  /** The .tgz file. */
  readonly tarball: string;
  /** The paths inside it, as `npm pack --json` lists them. */
  readonly files: string[];
}

/**
 * `npm pack` of this checkout into `dir`; under scripts/test.mjs, once per
 * run (in its FDPASS_TEST_RUN folder, which the run removes) and reused by
 * the next file that asks: the checkout does not change during a run.
 */
export function pack(dir: string): Packed {
  const shared = process.env.FDPASS_TEST_RUN ? join(process.env.FDPASS_TEST_RUN, 'npm-pack') : null;
  const index = shared && join(shared, 'packed.json');
  if (index && existsSync(index)) return JSON.parse(readFileSync(index, 'utf8')) as Packed;
  const out = shared ?? dir;
  mkdirSync(out, { recursive: true });
  const r = run('npm', ['pack', '--json', '--pack-destination', out], repoRoot);
  const packed = JSON.parse(ok(r, 'npm pack')) as { filename: string; files: { path: string }[] }[];
  const result: Packed = { tarball: join(out, packed[0]!.filename), files: packed[0]!.files.map((f) => f.path) };
  if (index) {
    writeFileSync(`${index}.tmp`, JSON.stringify(result));
    renameSync(`${index}.tmp`, index);
  }
  return result;
}

/** A consumer project in `project` with the tarball installed, scripts off, offline. */
export function installInto(project: string, tarball: string): void {
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  ok(run('npm', ['install', '--ignore-scripts', '--offline', '--no-audit', '--no-fund', tarball], project), 'npm install');
  // The consumer's @types/node: ours (the install is offline).
  mkdirSync(join(project, 'node_modules', '@types'), { recursive: true });
  symlinkSync(join(repoRoot, 'node_modules', '@types', 'node'), join(project, 'node_modules', '@types', 'node'));
}
