// Tools for the platform tests: npm-provided tools from scripts/tools.mjs
// (installed when missing; a failed install skips, or fails under CI=true),
// and the link check of a prebuilt addon with readelf (binutils).
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';
import { inCI } from '../tools.js';

const ci = inCI;

const script = join(repoRoot, 'scripts', 'tools.mjs');

/** An npm-provided tool (scripts/tools.mjs) if it is installed, or null. */
export function toolPath(name: 'zig' | 'node-arm64' | 'bun-musl' | 'bun-musl-arm64'): string | null {
  const found = spawnSync(process.execPath, [script, 'path', name], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : null;
}

/** An npm-provided tool (scripts/tools.mjs), installed into its cache if missing. */
export function ensureTool(name: 'zig' | 'node-arm64'): { path: string | null; skip: string | null } {
  const found = toolPath(name);
  if (found) return { path: found, skip: null };
  const r = spawnSync(process.execPath, [script, 'install', name], { encoding: 'utf8', timeout: 600_000 });
  if (r.status === 0) return { path: r.stdout.trim().split('\n').pop()!, skip: null };
  const why = `${name} could not be installed from npm (node scripts/tools.mjs install ${name}): ${r.stderr.trim().split('\n').pop()}`;
  if (ci) throw new Error(`CI=true: ${why}`);
  return { path: null, skip: why };
}

function readelf(args: string[]): string {
  const r = spawnSync('readelf', ['-W', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`readelf ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Dynamic symbols of an ELF file: name (without @version), defined or not, bound weakly or not. */
function dynSyms(file: string): { name: string; undefined: boolean; weak: boolean }[] {
  const out: { name: string; undefined: boolean; weak: boolean }[] = [];
  for (const line of readelf(['--dyn-syms', file]).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^\d+:$/.test(f[0]!)) continue;
    const name = f[7]!.replace(/@.*$/, '');
    if (name !== '') out.push({ name, undefined: f[6] === 'UND', weak: f[4] === 'WEAK' });
  }
  return out;
}

// Where each C library may be, native (Debian multiarch)
// or a cross toolchain's copy; the first that exists is read.
const glibc = {
  'X86-64': ['/lib/x86_64-linux-gnu/libc.so.6', '/usr/x86_64-linux-gnu/lib/libc.so.6'],
  AArch64: ['/lib/aarch64-linux-gnu/libc.so.6', '/usr/aarch64-linux-gnu/lib/libc.so.6'],
};
// musl exports the same names on every architecture: either one will do.
const musl = ['/usr/lib/x86_64-linux-musl/libc.so', '/usr/lib/aarch64-linux-musl/libc.so', '/usr/lib/musl/lib/libc.so'];
const libcFiles: Record<string, string[]> = {
  'X86-64 glibc': glibc['X86-64'],
  'AArch64 glibc': glibc.AArch64,
  'X86-64 musl': musl,
  'AArch64 musl': musl,
};

/**
 * What a prebuilt addon asks of the system: its machine, its NEEDED
 * libraries, the symbol versions it requires, and the undefined symbols that
 * neither its C library nor Node (napi_*, node_api_*, uv_*) provides.
 */
export function linkCheck(file: string): { machine: string; needed: string[]; versions: string[]; unknown: string[] } {
  const machine = /Machine:\s+(?:Advanced Micro Devices )?(\S+)/.exec(readelf(['-h', file]))?.[1] ?? '?';
  const needed = [...readelf(['-d', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  const versions = [...new Set([...readelf(['-V', file]).matchAll(/Name: (GLIBC_[0-9.]+)/g)].map((m) => m[1]!))];
  const libc = needed.includes('libc.so.6') ? 'glibc' : 'musl';
  const candidates = libcFiles[`${machine} ${libc}`] ?? [];
  const libcFile = candidates.find((f) => existsSync(f));
  if (!libcFile) throw new Error(`no ${libc} for ${machine} here to check against (looked at ${candidates.join(', ') || 'nothing'})`);
  const provided = new Set(
    dynSyms(libcFile)
      .filter((s) => !s.undefined)
      .map((s) => s.name),
  );
  const unknown = dynSyms(file)
    .filter((s) => s.undefined && !s.weak && !/^(napi_|node_api_|uv_)/.test(s.name) && !provided.has(s.name))
    .map((s) => s.name);
  return { machine, needed, versions, unknown };
}

/**
 * Load a musl addon with musl's own dynamic loader: a small musl program that
 * exports a stub for each Node symbol the addon needs (napi_*, uv_*) dlopens
 * it with RTLD_NOW, so every libc symbol must resolve in musl, and looks up
 * its Node-API entry point. Nothing of the addon runs. Needs musl-gcc.
 */
export function muslDlopen(file: string, dir: string): { status: number | null; output: string } {
  const nodeSyms = dynSyms(file)
    .filter((s) => s.undefined && /^(napi_|node_api_|uv_)/.test(s.name))
    .map((s) => s.name);
  const src = [
    '#include <dlfcn.h>',
    '#include <stdio.h>',
    ...nodeSyms.map((n) => `void ${n}(void) {}`),
    'int main(int argc, char **argv) {',
    '  (void)argc;',
    '  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);',
    '  if (!h) { printf("dlopen: %s\\n", dlerror()); return 1; }',
    '  void *entry = dlsym(h, "napi_register_module_v1");',
    '  printf("%s\\n", entry ? "napi_register_module_v1 found" : "no napi_register_module_v1");',
    '  return entry ? 0 : 1;',
    '}',
  ].join('\n');
  writeFileSync(join(dir, 'loader.c'), src);
  const cc = spawnSync('musl-gcc', ['-rdynamic', '-o', join(dir, 'loader'), join(dir, 'loader.c')], { encoding: 'utf8' });
  if (cc.status !== 0) return { status: cc.status, output: `musl-gcc: ${cc.stderr}` };
  const r = spawnSync(join(dir, 'loader'), [file], { encoding: 'utf8', env: muslEnv() });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * The environment for a musl program: ours without LD_PRELOAD. Under `npm run
 * test:asan` it names glibc's ASan runtime, which musl's loader cannot load
 * (libgcc_s, libstdc++ and glibc symbols missing): the program would exit 127
 * before its first line.
 */
export function muslEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  return env;
}
