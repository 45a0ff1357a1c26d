#!/usr/bin/env node
// npm run test:asan: builds the addon with AddressSanitizer and
// UndefinedBehaviorSanitizer into build-asan/ (the normal build in build/ is
// left alone), then runs the test suite against it with gcc's ASan runtime
// preloaded (Node itself is not instrumented, so the runtime must come first).
// Any sanitizer report aborts the process, so a finding fails the run.
// Arguments filter test files like scripts/test.mjs; default: the core tests
// and the fuzzing/hardening suites (the files directly under test/).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const prefix = dirname(dirname(process.execPath));
const nodedir = process.env.npm_config_nodedir ?? prefix;
const include = join(nodedir, 'include', 'node');
if (!existsSync(join(include, 'node_api.h'))) {
  console.error(`test:asan: no Node headers in ${include}`);
  process.exit(1);
}
mkdirSync('build-asan', { recursive: true });
// The addon's sources, as binding.gyp lists them.
const sources = JSON.parse(readFileSync('binding.gyp', 'utf8')).targets[0].sources;
const out = join(process.cwd(), 'build-asan', 'fdpass.node');
execFileSync(
  'gcc',
  [
    '-std=c11', '-Wall', '-Wextra', '-Werror', '-O1', '-g', '-fno-omit-frame-pointer',
    '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
    '-DNAPI_VERSION=8', '-I', include, '-shared', '-fPIC',
    '-pthread', '-o', out, ...sources,
  ],
  { stdio: 'inherit' },
);
const libasan = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
const libubsan = execFileSync('gcc', ['-print-file-name=libubsan.so'], { encoding: 'utf8' }).trim();
if (!existsSync(libasan)) {
  console.error(`test:asan: ${libasan} not found (install gcc's libasan)`);
  process.exit(1);
}
const env = {
  ...process.env,
  FDPASS_NATIVE: out,
  LD_PRELOAD: [libasan, libubsan].join(' '),
  // Node leaks by design at exit; fd-passing bugs show as overflows and
  // use-after-free, which abort. abort_on_error makes the test file fail.
  ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1:allow_user_segv_handler=1:detect_odr_violation=0',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  FDPASS_ASAN: '1',
};
const filters = process.argv.slice(2);
const r = spawnSync(process.execPath, ['scripts/test.mjs', ...filters], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
