// The cross-runtime conformance suite (test/conformance/run.mjs) under Node
// on both readiness backends, and under Bun and Deno when they are here.
// CI installs both from npm (.ci/run) and points FDPASS_BUN and FDPASS_DENO
// at their binaries; elsewhere `bun` and `deno` on PATH are used, or the test
// is skipped with the install line (never under CI, CI=true or CI=1).
// Each test the suite itself skips (not on this runtime, or a missing tool)
// becomes a skipped subtest here, so that scripts/test.mjs's one summary
// counts it.
//
// Bun's musl build runs the suite with the linux-x64-musl prebuild, built
// here by scripts/prebuild.mjs with musl-gcc (the checkout's glibc
// build/Release would load under musl's loader too, which maps libc.so.6 to
// itself, and prove nothing). Bun's musl build needs Debian's musl and a shim
// for its libstdc++: `node scripts/tools.mjs install bun-musl` makes it (see
// scripts/tools.mjs), FDPASS_BUN_MUSL overrides.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { repoRoot, tempDir } from '../helpers.js';
import { toolPath } from '../package/platforms.js';
import { inCI, missing } from '../tools.js';

const runSuite = join(repoRoot, 'test', 'conformance', 'run.mjs');

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

const muslInstall = 'apt-get install -y musl musl-tools && node scripts/tools.mjs install bun-musl';

const runtimes: {
  name: string;
  bin: string | undefined;
  argv: string[];
  install: string;
  env?: Record<string, string>;
  musl?: boolean;
}[] = [
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
  {
    name: 'Bun (musl)',
    bin: missing('musl-tools') === null ? (process.env.FDPASS_BUN_MUSL ?? toolPath('bun-musl') ?? undefined) : undefined,
    argv: [runSuite],
    install: muslInstall,
    musl: true,
  },
];

describe('conformance suite on every runtime', () => {
  for (const rt of runtimes) {
    const absent = rt.bin
      ? null
      : rt.musl
        ? `${rt.name} not found (FDPASS_BUN_MUSL, or musl-gcc and node scripts/tools.mjs path bun-musl): ${rt.install}`
        : `${rt.name} not found (set FDPASS_${rt.name.toUpperCase()} or put it on PATH): ${rt.install}`;
    if (absent && inCI) {
      it(`${rt.name}: test/conformance/run.mjs`, () => assert.fail(`CI=${process.env.CI} and ${absent}`));
      continue;
    }
    // npm run test:asan: the musl prebuild is not the instrumented addon (npm test runs it).
    const asan = rt.musl && process.env.FDPASS_ASAN === '1' ? 'the musl prebuild is not built with ASan (npm test runs it)' : null;
    it(`${rt.name}: test/conformance/run.mjs`, { skip: absent ?? asan ?? false }, async (t) => {
      const env = { ...process.env, ...rt.env };
      if (!rt.env) delete env.FDPASS_BACKEND; // each runtime's own choice
      const tmp = rt.musl ? tempDir('fdpass-musl-') : null;
      if (tmp) {
        const built = spawnSync(
          process.execPath,
          [join(repoRoot, 'scripts', 'prebuild.mjs'), '--only', 'linux-x64-musl', '--out', tmp.dir],
          {
            encoding: 'utf8',
          },
        );
        assert.equal(built.status, 0, built.stderr);
        env.FDPASS_NATIVE = join(tmp.dir, 'linux-x64-musl', 'fdpass.node');
        delete env.LD_PRELOAD; // glibc's ASan runtime (npm run test:asan) cannot load under musl
      }
      let r;
      try {
        r = spawnSync(rt.bin!, rt.argv, { cwd: repoRoot, env, encoding: 'utf8', timeout: 300_000 });
      } finally {
        tmp?.cleanup();
      }
      assert.equal(r.signal, null, `${rt.name} died of ${r.signal}\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      if (rt.musl) assert.match(r.stdout, /^# addon: .*\/linux-x64-musl\/fdpass\.node$/m, 'the musl prebuild ran');
      const summary = /^# (\d+) passed, 0 failed, (\d+) skipped$/m.exec(r.stdout);
      assert.ok(summary, `no summary line in\n${r.stdout}`);
      assert.ok(Number(summary[1]) > 0, 'the suite ran tests');
      const skips = [...r.stdout.matchAll(/^ok - (.*) # SKIP (.*)$/gm)];
      assert.equal(skips.length, Number(summary[2]), 'every skip the suite counted is one line');
      for (const [, name, reason] of skips) await t.test(`${rt.name}: ${name}`, { skip: reason }, () => {});
    });
  }
});
