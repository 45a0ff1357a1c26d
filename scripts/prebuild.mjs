#!/usr/bin/env node
// Builds the addon for the npm tarball: prebuilds/<platform>-<arch>/fdpass.node.
// It is compiled against the headers of the Node that runs this script with
// Node-API (NAPI_VERSION in binding.gyp), so one binary serves every Node >= 20
// on the same platform; run it with Node 20. The build happens in a scratch
// copy of the native sources, so the checkout's build/ is left alone.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'fdpass-prebuild-'));
try {
  cpSync(join(root, 'native'), join(scratch, 'native'), { recursive: true });
  copyFileSync(join(root, 'binding.gyp'), join(scratch, 'binding.gyp'));
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { cwd: scratch, stdio: [0, 2, 2] });
  if (r.status !== 0) process.exit(r.status ?? 1);
  const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  mkdirSync(target, { recursive: true });
  copyFileSync(join(scratch, 'build', 'Release', 'fdpass.node'), join(target, 'fdpass.node'));
  console.error(`fdpass: prebuilt ${join('prebuilds', `${process.platform}-${process.arch}`, 'fdpass.node')} with Node ${process.version}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
