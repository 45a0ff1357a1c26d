#!/usr/bin/env node
// Builds the addons for the npm tarball, one per platform, with no download:
//
//   prebuilds/linux-x64/fdpass.node         glibc, the host's cc
//   prebuilds/linux-arm64/fdpass.node       glibc, Debian's aarch64-linux-gnu-gcc
//   prebuilds/linux-x64-musl/fdpass.node    musl, Debian's musl-gcc (musl-tools)
//   prebuilds/linux-arm64-musl/fdpass.node  musl, Zig's cc (npm, see scripts/tools.mjs)
//
// The sources, defines and C flags are those of binding.gyp; the headers are
// Node's (Node-API and libuv, the same on every architecture), so one binary
// serves every Node >= 20 of its platform. A missing toolchain skips its
// target with the install line, or fails with --strict (and under CI=true or CI=1).
//
//   node scripts/prebuild.mjs [--out DIR] [--only linux-arm64,...] [--strict]
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { arch, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { toolPath } from './tools.mjs';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const out = opt('--out') ?? join(root, 'prebuilds');
const only = opt('--only')?.split(',');
const strict = args.includes('--strict') || process.env.CI === 'true' || process.env.CI === '1';

/** binding.gyp is JSON with Python's comments and quotes allowed. */
function readGyp() {
  const text = readFileSync(join(root, 'binding.gyp'), 'utf8')
    .split('\n')
    .map((l) => l.replace(/^\s*#.*$/, ''))
    .join('\n')
    .replace(/'/g, '"')
    .replace(/,(\s*[\]}])/g, '$1');
  const target = JSON.parse(text).targets[0];
  return {
    name: target.target_name,
    sources: target.sources.filter((s) => s.endsWith('.c')),
    defines: target.defines ?? [],
    includes: target.include_dirs ?? [],
    cflags: (target.cflags ?? []).filter((f) => /^-(std=|W|O)/.test(f)),
  };
}

/** Node's headers: npm's nodedir, the include/ beside this Node, or the usual prefixes. */
function nodeHeaders() {
  const dirs = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(dirname(dirname(process.execPath)), 'include', 'node'),
    '/usr/local/include/node',
    '/usr/include/node',
  ];
  const dir = dirs.find((d) => d && existsSync(join(d, 'node_api.h')) && existsSync(join(d, 'uv.h')));
  if (!dir) throw new Error(`Node's headers (node_api.h, uv.h) not found in ${dirs.filter(Boolean).join(', ')}`);
  return dir;
}

function which(cmd) {
  if (cmd.includes('/')) return existsSync(cmd) ? cmd : null;
  for (const d of (process.env.PATH ?? '').split(':')) if (d && existsSync(join(d, cmd))) return join(d, cmd);
  return null;
}

const hostArch = arch();
// machine: e_machine of the result. cc: the compiler command and extra flags, or null.
const TARGETS = [
  {
    name: 'linux-x64',
    machine: 62,
    cc: () => ({ cmd: [hostArch === 'x64' ? 'cc' : 'x86_64-linux-gnu-gcc'] }),
    install: 'apt-get install gcc',
  },
  {
    name: 'linux-arm64',
    machine: 183,
    cc: () => ({ cmd: [hostArch === 'arm64' ? 'cc' : 'aarch64-linux-gnu-gcc'] }),
    install: 'apt-get install gcc-aarch64-linux-gnu',
  },
  {
    name: 'linux-x64-musl',
    machine: 62,
    musl: true,
    cc: () => (hostArch === 'x64' ? { cmd: ['musl-gcc'] } : null),
    install: 'apt-get install musl-tools',
  },
  {
    name: 'linux-arm64-musl',
    machine: 183,
    musl: true,
    cc: () => {
      const zig = process.env.FDPASS_ZIG ?? which('zig') ?? toolPath('zig');
      // musl's CMSG_NXTHDR compares signed with unsigned: clang warns in our code.
      return zig ? { cmd: [zig, 'cc', '-target', 'aarch64-linux-musl'], flags: ['-Wno-sign-compare'] } : null;
    },
    install: 'node scripts/tools.mjs install zig',
  },
];

/**
 * musl-gcc searches musl's headers only; sources that include <linux/...>
 * get the kernel's headers from a folder holding just linux/, asm/ and
 * asm-generic/ (never glibc's own headers).
 */
function kernelHeaders(scratch) {
  const dir = join(scratch, 'kernel-include');
  mkdirSync(dir);
  const multiarch = '/usr/include/x86_64-linux-gnu/asm';
  for (const [name, from] of [
    ['linux', '/usr/include/linux'],
    ['asm-generic', '/usr/include/asm-generic'],
    ['asm', multiarch],
  ]) {
    if (existsSync(from)) symlinkSync(from, join(dir, name));
  }
  return dir;
}

const gyp = readGyp();
const headers = nodeHeaders();
const scratch = mkdtempSync(join(tmpdir(), 'fdpass-prebuild-'));
const built = [];
const skipped = [];
try {
  for (const t of TARGETS) {
    if (only && !only.includes(t.name)) continue;
    const cc = t.cc();
    if (!cc || !which(cc.cmd[0])) {
      skipped.push(`${t.name}: no ${cc ? cc.cmd[0] : 'compiler'} (${t.install})`);
      continue;
    }
    const file = join(scratch, `${t.name}.node`);
    const argv = [
      ...cc.cmd.slice(1),
      '-shared',
      '-fPIC',
      '-pthread',
      '-s',
      ...gyp.cflags,
      ...(cc.flags ?? []),
      ...gyp.defines.map((d) => `-D${d}`),
      '-D_FILE_OFFSET_BITS=64',
      '-D_LARGEFILE_SOURCE',
      '-DBUILDING_NODE_EXTENSION',
      `-DNODE_GYP_MODULE_NAME=${gyp.name}`,
      ...gyp.includes.map((d) => `-I${join(root, d)}`),
      `-I${headers}`,
      ...(t.musl && t.machine === 62 ? ['-isystem', kernelHeaders(scratch)] : []),
      ...gyp.sources.map((s) => join(root, s)),
      '-o',
      file,
    ];
    const r = spawnSync(cc.cmd[0], argv, {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, ZIG_LOCAL_CACHE_DIR: join(scratch, 'zig') },
    });
    if (r.status !== 0) throw new Error(`${t.name}: ${cc.cmd.join(' ')} failed (${r.status ?? r.error?.message})`);
    const elf = readFileSync(file);
    if (elf.readUInt16LE(18) !== t.machine) throw new Error(`${t.name}: built for ELF machine ${elf.readUInt16LE(18)}, not ${t.machine}`);
    const dir = join(out, t.name);
    mkdirSync(dir, { recursive: true });
    copyFileSync(file, join(dir, `${gyp.name}.node`));
    built.push(t.name);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
console.error(
  `fdpass: prebuilt ${built.map((n) => `${n}/${gyp.name}.node`).join(', ') || 'nothing'} in ${out} (Node-API headers: ${headers})`,
);
for (const s of skipped) console.error(`fdpass: skipped ${s}`);
if (skipped.length > 0 && strict) {
  console.error('fdpass: --strict (or CI=true): every target must build');
  process.exit(1);
}
