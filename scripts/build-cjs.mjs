#!/usr/bin/env node
// Builds the CommonJS copy of the library in dist-cjs/, so that require('fdpass')
// works on Node 20 (which cannot require() an ES module). tsc compiles a copy
// of src/ (without the CLI, which is ESM only) with module CommonJS. The one
// ES-only construct in src/, import.meta.url (native.ts finds the addon with
// it), becomes the URL of __filename. dist-cjs/ sits beside dist/, so the
// addon's relative paths are the same. Core modules are required by their
// bare names ('events', not 'node:events'): some module loaders (Jest 24's,
// for one) do not resolve the 'node:' prefix, and a library that fails to
// load there is silently replaced by a fallback (dbus-next's net socket).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { join } from 'node:path';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const staging = join(root, 'build', 'cjs-src');
const out = join(root, 'dist-cjs');
rmSync(staging, { recursive: true, force: true });
rmSync(out, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
cpSync(join(root, 'src'), join(staging, 'src'), { recursive: true, filter: (p) => !p.includes(`${join('src', 'cli')}`) });

const URL_OF_THIS_FILE = "require('url').pathToFileURL(__filename).href";
function rewrite(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) rewrite(p);
    else if (name.endsWith('.ts')) {
      const text = readFileSync(p, 'utf8');
      if (text.includes('import.meta.url')) {
        writeFileSync(p, `const __fdpassModuleUrl: string = ${URL_OF_THIS_FILE};\n` + text.replaceAll('import.meta.url', '__fdpassModuleUrl'));
      }
    }
  }
}
rewrite(join(staging, 'src'));

const base = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
const tsconfig = {
  compilerOptions: {
    ...base.compilerOptions,
    module: 'CommonJS',
    moduleResolution: 'Node10',
    esModuleInterop: true,
    rootDir: 'src',
    outDir: out,
    sourceMap: false,
    typeRoots: [join(root, 'node_modules', '@types')],
  },
  include: ['src'],
};
writeFileSync(join(staging, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(staging, 'tsconfig.json')], { stdio: [0, 2, 2] });
if (r.status !== 0) process.exit(r.status ?? 1);
// require("node:x") -> require("x") where the bare name is the same module
// (node:test and other prefix-only modules keep their prefix).
const bare = new Set(builtinModules.filter((m) => !m.startsWith('node:')));
let prefixed = 0;
function unprefix(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) unprefix(p);
    else if (name.endsWith('.js')) {
      const text = readFileSync(p, 'utf8');
      const out = text.replace(/require\((["'])node:([a-z0-9_/]+)\1\)/g, (all, q, m) => (bare.has(m) ? `require(${q}${m}${q})` : all));
      if (out !== text) writeFileSync(p, out);
      prefixed += out.includes("require('node:") || out.includes('require("node:') ? 1 : 0;
    }
  }
}
unprefix(out);
if (prefixed > 0) {
  console.error(`build-cjs: ${prefixed} file(s) still require a 'node:' name`);
  process.exit(1);
}
// The package is "type": "module"; this folder's files are CommonJS.
writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');
