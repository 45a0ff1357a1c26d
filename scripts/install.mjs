#!/usr/bin/env node
// npm's install script: use the prebuilt addon when the tarball has one for
// this platform and it loads; otherwise compile from source with node-gyp.
// A source checkout (src/ present) always compiles, so CI tests the sources;
// so does npm_config_build_from_source (npm install --build-from-source).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'fdpass.node');
const fromSource = existsSync(join(root, 'src')) || ['true', '1', ''].includes(process.env.npm_config_build_from_source ?? 'no');

function loads(file) {
  try {
    createRequire(import.meta.url)(file);
    return true;
  } catch (err) {
    console.warn(`fdpass: the prebuilt addon does not load here (${err.message}); building from source`);
    return false;
  }
}

if (!fromSource && existsSync(prebuilt) && loads(prebuilt)) {
  process.exit(0); // nothing to build
}
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
