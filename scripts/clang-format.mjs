#!/usr/bin/env node
// clang-format over native/*.c and native/*.h for `npm run lint` (--check) and
// `npm run format` (--write). Without clang-format the check is skipped with
// the install line (it fails under CI=true, where everything must run).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const found = (process.env.PATH ?? '').split(delimiter).some((dir) => {
  try {
    accessSync(join(dir, 'clang-format'), constants.X_OK);
    return dir !== '';
  } catch {
    return false;
  }
});
if (!found) {
  const ci = process.env.CI === 'true' || process.env.CI === '1';
  console.error(`clang-format not found on PATH: ${ci ? 'CI=true, failing' : 'C format check skipped'} (apt-get install -y clang-format)`);
  process.exit(ci ? 1 : 0);
}
const files = readdirSync('native')
  .filter((f) => f.endsWith('.c') || f.endsWith('.h'))
  .map((f) => join('native', f));
const args = process.argv[2] === '--write' ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
const r = spawnSync('clang-format', args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
