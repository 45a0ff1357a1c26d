// The cross-runtime conformance suite: the README's quick start and a subset
// of the core, stream, runc, systemd, handoff, cluster and shm behaviour,
// written against node:assert only, so that the same files run on Node, Bun
// and Deno:
//
//   node test/conformance/run.mjs [filter...]
//   bun test/conformance/run.mjs [filter...]
//   deno run -A --node-modules-dir=manual test/conformance/run.mjs [filter...]
//
// 'fdpass' resolves as it does for a user: this checkout (the package's self
// reference), or, with this folder copied beside a node_modules/fdpass, the
// installed package. Filters pick tests whose "file: name" contains one.
// Exit status 0 when every test passed (or was skipped, with its reason).
import { readdirSync, readFileSync } from 'node:fs';
import { assertions, runtime, settleRuntime, tests } from './harness.mjs';

const dir = new URL('.', import.meta.url).pathname;
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.conf.mjs'))
  .sort();
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));

const version = process.versions[runtime] ?? process.version;
console.log(`# fdpass conformance on ${runtime} ${version} (${process.arch}), FDPASS_BACKEND=${process.env.FDPASS_BACKEND ?? ''}`);
const settled = await settleRuntime();
if (settled) console.log(settled);
let failed = 0;
let passed = 0;
let skipped = 0;
for (const file of files) {
  const start = tests.length;
  await import(new URL(file, import.meta.url).href);
  for (const t of tests.slice(start)) {
    const name = `${file.replace('.conf.mjs', '')}: ${t.name}`;
    if (filters.length > 0 && !filters.some((f) => name.includes(f))) continue;
    if (t.skip) {
      skipped++;
      console.log(`ok - ${name} # SKIP ${t.skip}`);
      continue;
    }
    const t0 = Date.now();
    try {
      assertions.count = 0;
      await t.fn();
      if (assertions.count === 0) throw new Error('the test ran no assertion: a test that checks nothing cannot fail');
      passed++;
      console.log(`ok - ${name} (${Date.now() - t0} ms)`);
    } catch (err) {
      failed++;
      console.log(`not ok - ${name}`);
      console.log(
        String(err?.stack ?? err)
          .split('\n')
          .map((l) => `#   ${l}`)
          .join('\n'),
      );
    }
  }
}
// The addon the tests loaded (FDPASS_NATIVE, build/Release or a prebuild).
const maps = readFileSync('/proc/self/maps', 'utf8').split('\n');
const addon = maps.find((l) => l.endsWith('fdpass.node'));
console.log(`# addon: ${addon ? addon.slice(addon.indexOf('/')) : 'not mapped'}`);
console.log(`# ${passed} passed, ${failed} failed, ${skipped} skipped`);
// Exit explicitly: a leftover handle must not hide the verdict (the
// keep-alive tests check lifetimes in child processes instead).
process.exit(failed > 0 ? 1 : 0);
