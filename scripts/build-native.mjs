#!/usr/bin/env node
// Builds the addon with node-gyp against the headers of the Node that runs
// this script: npm's nodedir setting if there is one, else the include/ folder
// beside this Node's binary. No download is ever needed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const prefix = dirname(dirname(process.execPath));
let nodedir = process.env.npm_config_nodedir;
if (!nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) nodedir = prefix;

let gyp;
for (const candidate of [
  () => require.resolve('node-gyp/bin/node-gyp.js'),
  () => join(dirname(process.env.npm_execpath ?? ''), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  () => join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
]) {
  try {
    const p = candidate();
    if (existsSync(p)) {
      gyp = p;
      break;
    }
  } catch {
    // try the next place
  }
}
if (!gyp) {
  console.error('fdpass: node-gyp not found; install it or use a prebuilt binary');
  process.exit(1);
}
const args = [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : []), ...process.argv.slice(2)];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
