#!/usr/bin/env node
// Runs every compiled test file with Node's built-in test runner, with the
// Node that runs this script (so CI can run the same suite on Node 20 and 24).
// Arguments filter test files by substring: node scripts/test.mjs socket
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find('build-test/test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files found (run "npm test", which compiles them first)');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=120000', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
