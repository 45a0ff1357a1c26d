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
let status = 0;
try {
  cpSync(join(root, 'native'), join(scratch, 'native'), { recursive: true });
  copyFileSync(join(root, 'binding.gyp'), join(scratch, 'binding.gyp'));
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { cwd: scratch, stdio: [0, 2, 2] });
  status = r.status ?? 1;
  if (status !== 0) throw new Error(`fdpass: building the addon failed (${status}); it needs a C compiler, make and python3 (node-gyp)`);
  const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  mkdirSync(target, { recursive: true });
  copyFileSync(join(scratch, 'build', 'Release', 'fdpass.node'), join(target, 'fdpass.node'));
  console.error(`fdpass: prebuilt ${join('prebuilds', `${process.platform}-${process.arch}`, 'fdpass.node')} with Node ${process.version}`);
} catch (err) {
  console.error(err.message);
  status ||= 1;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(status);
