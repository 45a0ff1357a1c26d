#!/usr/bin/env node
// npm run fuzz:cmsg [seconds]: fuzzes the control-message parser the addon
// runs (native/cmsg.h) for a fixed time budget. libFuzzer (clang
// -fsanitize=fuzzer) gets two thirds of the time when clang can build it; a
// seeded structured loop under gcc's ASan+UBSan always runs. Any sanitizer
// report or parser mismatch fails the run; libFuzzer leaves the crashing input
// in build-fuzz/.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const seconds = Number(process.argv[2] ?? 20);
const seed = process.env.FDPASS_FUZZ_SEED ?? String(Date.now() % 1000000);
const src = 'test/fuzz/cmsg_fuzz.c';
const flags = ['-std=c11', '-Wall', '-Wextra', '-Werror', '-O1', '-g', '-fno-sanitize-recover=all'];
mkdirSync('build-fuzz/corpus', { recursive: true });

function run(cmd, args) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`fuzz:cmsg: ${cmd} failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}

let libFuzzer = false;
try {
  execFileSync('clang', [...flags, '-fsanitize=fuzzer,address,undefined', '-o', 'build-fuzz/cmsg_libfuzzer', src], { stdio: 'inherit' });
  libFuzzer = true;
} catch {
  console.log('fuzz:cmsg: clang with libFuzzer not available; structured loop only');
}
execFileSync('gcc', [...flags, '-DFDP_STANDALONE', '-fsanitize=address,undefined', '-o', 'build-fuzz/cmsg_loop', src], { stdio: 'inherit' });

const loopSeconds = libFuzzer ? Math.max(1, Math.round(seconds / 3)) : seconds;
run('build-fuzz/cmsg_loop', [seed, String(loopSeconds)]);
if (libFuzzer) {
  run('build-fuzz/cmsg_libfuzzer', [
    `-max_total_time=${seconds - loopSeconds}`,
    `-seed=${seed}`,
    '-max_len=8192',
    '-print_final_stats=0',
    '-artifact_prefix=build-fuzz/',
    'build-fuzz/corpus',
  ]);
}
console.log(`fuzz:cmsg: ${seconds} s, seed ${seed}, no finding`);
