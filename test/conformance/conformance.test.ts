// The cross-runtime conformance suite (test/conformance/run.mjs) under Node
// on both readiness backends, and under Bun and Deno when they are here.
// CI installs both from npm (.ci/run) and points FDPASS_BUN and FDPASS_DENO
// at their binaries; elsewhere `bun` and `deno` on PATH are used, or the test
// is skipped with the install line (never under CI=true).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { repoRoot } from '../helpers.js';

const runSuite = join(repoRoot, 'test', 'conformance', 'run.mjs');

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

const runtimes: { name: string; bin: string | undefined; argv: string[]; install: string; env?: Record<string, string> }[] = [
  { name: 'Node, libuv backend', bin: process.execPath, argv: [runSuite], install: '', env: { FDPASS_BACKEND: 'uv' } },
  { name: 'Node, thread backend', bin: process.execPath, argv: [runSuite], install: '', env: { FDPASS_BACKEND: 'thread' } },
  {
    name: 'Bun',
    bin: process.env.FDPASS_BUN ?? onPath('bun'),
    argv: [runSuite],
    install: 'npm install --prefix /tmp/bun @oven/bun-linux-x64 && export FDPASS_BUN=/tmp/bun/node_modules/@oven/bun-linux-x64/bin/bun',
  },
  {
    name: 'Deno',
    bin: process.env.FDPASS_DENO ?? onPath('deno'),
    argv: ['run', '-A', '--node-modules-dir=manual', runSuite],
    install: 'npm install --prefix /tmp/deno deno && export FDPASS_DENO=/tmp/deno/node_modules/@deno/linux-x64-glibc/deno',
  },
];

describe('conformance suite on every runtime', () => {
  for (const rt of runtimes) {
    const missing = rt.bin ? null : `${rt.name} not found (set FDPASS_${rt.name.toUpperCase()} or put it on PATH): ${rt.install}`;
    if (missing && process.env.CI === 'true') {
      it(`${rt.name}: test/conformance/run.mjs`, () => assert.fail(`CI=true and ${missing}`));
      continue;
    }
    it(`${rt.name}: test/conformance/run.mjs`, { skip: missing ?? false }, () => {
      const env = { ...process.env, ...rt.env };
      if (!rt.env) delete env.FDPASS_BACKEND; // each runtime's own choice
      const r = spawnSync(rt.bin!, rt.argv, { cwd: repoRoot, env, encoding: 'utf8', timeout: 300_000 });
      assert.equal(r.signal, null, `${rt.name} died of ${r.signal}\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /# \d+ passed, 0 failed/);
    });
  }
});
