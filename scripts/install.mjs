#!/usr/bin/env node
// npm's install script: use the prebuilt addon that fits this OS, CPU and C
// library (prebuilds/linux-x64, linux-arm64, linux-x64-musl, ...) when the
// tarball has it and it loads; otherwise compile from source with node-gyp.
// A source checkout (src/ present) always compiles, so CI tests the sources;
// so does npm_config_build_from_source (npm install --build-from-source).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const fromSource = existsSync(join(root, 'src')) || ['true', '1', ''].includes(process.env.npm_config_build_from_source ?? 'no');

function loads(file) {
  try {
    createRequire(import.meta.url)(file);
    return true;
  } catch (err) {
    console.warn(`fdpass: the prebuilt addon ${file} does not load here (${err.message.split('\n')[0]}); building from source`);
    return false;
  }
}

if (!fromSource) {
  // The package's own platform detection (dist/ is in the tarball).
  const { prebuildName } = await import(pathToFileURL(join(root, 'dist', 'base', 'platform.js')).href);
  const prebuilt = join(root, 'prebuilds', prebuildName(), 'fdpass.node');
  if (existsSync(prebuilt) && loads(prebuilt)) process.exit(0); // nothing to build
  if (!existsSync(prebuilt)) console.warn(`fdpass: no prebuilt addon for ${prebuildName()}; building from source`);
}
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
