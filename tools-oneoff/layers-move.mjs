#!/usr/bin/env node
// The layers codemod (issue 23): moves fdpass's sources and tests into folders
// that show their layer, and rewrites everything that names them. Idempotent:
// it moves only what is still at an old path, and a path already at its new
// place maps to itself, so it can be re-run after merging a branch that still
// adds files at old paths (src/shm/, src/supervisor/, test/<module>/...).
//
//   node /work/wt/layers-move.mjs [repo]        (default: the current folder)
//   node /work/wt/layers-move.mjs [repo] --dry  (print what it would do)
//
// What it does, in order:
//  1. Moves files with `git mv` (untracked ones with rename):
//       src/{native,platform,runtime,errors,fds,address}.ts -> src/base/
//       src/recv.ts -> src/io/
//       src/{socket,server,sync,convert,drain}.ts, src/stream/, src/pidfd/pidfd.ts
//         -> src/transport/ (stream/ as src/transport/stream/, Pidfd as pidfd.ts)
//       src/internal.ts -> src/protocols/internal.ts
//       every other folder of src/ (runc, seccomp, pidfd, systemd, handoff,
//         cluster, usocket, and any new one: shm, supervisor...) -> src/protocols/<name>/
//       src/io/, src/cli/, src/index.ts stay.
//     Tests mirror that: test/<root file>.test.ts by the table TEST_FILES below
//     (base/, transport/, guarantees/, docs/, scripts/, conformance/), test/stream/
//     -> test/transport/stream/, test/pidfd/pidfd.test.ts -> test/transport/,
//     every other module folder -> test/protocols/<name>/; test/io, cli,
//     conformance, package, fixtures, fuzz, peers and the helpers stay.
//  2. Rewrites every relative import/export/require/import()/new URL(..., import.meta.url)
//     specifier in src/, test/, bench/, examples/, scripts/, packages/ to the moved files
//     (also those that point into dist/ or build-test/).
//  3. Rewrites repository paths written out in text: 'src/runc/x.ts',
//     './dist/runc/index.js', join(root, 'dist', 'platform.js'),
//     'build-test/test/systemd/fixtures', in code, package.json (exports, bin),
//     typedoc.json, .ci/run, README.md, ARCHITECTURE.md and docs/*.md.
//  4. Routes every import of a protocol module (src/protocols/<name>/) that
//     leaves its folder through src/protocols/internal.ts: the import names
//     '../internal.js', and internal.ts re-exports the name from where it
//     lives (an @internal name in a statement of its own marked @internal, so
//     that stripInternal drops both). An import of another protocol is left as
//     it is, for lint to report.
//  5. One fix-up the moves need: src/base/native.ts finds the package root one
//     folder further up.
// It prints what it moved and changed, and what it could not place (a new
// file in src/'s root: put it in its layer by hand, and add it to SRC_FILES).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';

const args = process.argv.slice(2);
const dry = args.includes('--dry');
const root = resolve(args.find((a) => !a.startsWith('--')) ?? '.');
if (!existsSync(join(root, 'src', 'index.ts')) || !existsSync(join(root, 'package.json'))) {
  console.error(`${root} is not an fdpass checkout (no src/index.ts)`);
  process.exit(2);
}
const log = (...a) => console.log(...a);

// ---- the layout ----------------------------------------------------------------

const LAYERS = new Set(['base', 'io', 'transport', 'protocols', 'cli']);
/** src/'s root files, by name: their layer folder (index.ts, the package's entry, stays). */
const SRC_FILES = {
  'native.ts': 'base/native.ts',
  'platform.ts': 'base/platform.ts',
  'runtime.ts': 'base/runtime.ts',
  'errors.ts': 'base/errors.ts',
  'fds.ts': 'base/fds.ts',
  'address.ts': 'base/address.ts',
  'recv.ts': 'io/recv.ts',
  'socket.ts': 'transport/socket.ts',
  'server.ts': 'transport/server.ts',
  'sync.ts': 'transport/sync.ts',
  'convert.ts': 'transport/convert.ts',
  'drain.ts': 'transport/drain.ts',
  'internal.ts': 'protocols/internal.ts',
};
/** Files inside a module folder that belong to a lower layer. */
const SRC_SPECIAL = { 'pidfd/pidfd.ts': 'transport/pidfd.ts' };
/** Module folders that are transports, not protocols. */
const SRC_TRANSPORT_DIRS = new Set(['stream']);

const TEST_STAY_DIRS = new Set(['io', 'cli', 'conformance', 'package', 'fixtures', 'fuzz', 'peers', 'base', 'transport', 'protocols', 'guarantees', 'docs', 'scripts']);
/** test/'s root test files: where each goes (helpers.ts, lines.ts, tools.ts, tsconfig.json stay). */
const TEST_FILES = {
  'fds.test.ts': 'base/fds.test.ts',
  'platform.test.ts': 'base/platform.test.ts',
  'runtime.test.ts': 'base/runtime.test.ts',
  'socket.test.ts': 'transport/socket.test.ts',
  'server.test.ts': 'transport/server.test.ts',
  'convert.test.ts': 'transport/convert.test.ts',
  'interop.test.ts': 'transport/interop.test.ts',
  'cloexec.test.ts': 'guarantees/cloexec.test.ts',
  'conventions.test.ts': 'guarantees/conventions.test.ts',
  'errors.test.ts': 'guarantees/bad-arguments.test.ts',
  'exhaustion.test.ts': 'guarantees/exhaustion.test.ts',
  'exit.test.ts': 'guarantees/exit.test.ts',
  'fuzz.test.ts': 'guarantees/fuzz.test.ts',
  'gc.test.ts': 'guarantees/gc.test.ts',
  'leak.test.ts': 'guarantees/leak.test.ts',
  'lifecycle.test.ts': 'guarantees/lifecycle.test.ts',
  'misuse.test.ts': 'guarantees/misuse.test.ts',
  'peer-death.test.ts': 'guarantees/peer-death.test.ts',
  'poll-gc.test.ts': 'guarantees/poll-gc.test.ts',
  'truncation.test.ts': 'guarantees/truncation.test.ts',
  'worker.test.ts': 'guarantees/worker-threads.test.ts',
  'readme.test.ts': 'docs/code-blocks.test.ts',
  'docs.test.ts': 'docs/docs.test.ts',
  'examples.test.ts': 'docs/examples.test.ts',
  'architecture.test.ts': 'docs/architecture.test.ts',
  'runner.test.ts': 'scripts/runner.test.ts',
  'conformance.test.ts': 'conformance/conformance.test.ts',
};
const TEST_SPECIAL = { 'pidfd/pidfd.test.ts': 'transport/pidfd.test.ts' };
const TEST_TRANSPORT_DIRS = new Set(['stream']);

const isDir = (p) => existsSync(join(root, p)) && statSync(join(root, p)).isDirectory();

/** A module folder of src/ or test/ that is not a layer: where it goes, or null. */
function moduleDir(top, name, transportDirs, stay) {
  if (stay.has(name)) return null;
  const target = transportDirs.has(name) ? `transport/${name}` : `protocols/${name}`;
  // Only folders that exist (at either place): 'src/golang.org' in a Go path is not ours.
  if (isDir(`${top}/${name}`) || isDir(`${top}/${target}`)) return target;
  return null;
}

/** src/... or test/... (a .ts file or a folder, '/'-separated): where it goes now. */
function mapSource(p) {
  const m = /^(src|test)\/(.*)$/.exec(p);
  if (!m) return p;
  const [, top, rest] = m;
  const files = top === 'src' ? SRC_FILES : TEST_FILES;
  const special = top === 'src' ? SRC_SPECIAL : TEST_SPECIAL;
  if (files[rest]) return `${top}/${files[rest]}`;
  if (special[rest]) return `${top}/${special[rest]}`;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? rest : rest.slice(0, slash);
  const tail = slash < 0 ? '' : rest.slice(slash);
  const stay = top === 'src' ? LAYERS : TEST_STAY_DIRS;
  const dir = moduleDir(top, first, top === 'src' ? SRC_TRANSPORT_DIRS : TEST_TRANSPORT_DIRS, stay);
  if (dir === null || first.includes('.')) return p;
  return `${top}/${dir}${tail}`;
}

/**
 * Any repository path: src/, test/, and their built copies in dist/,
 * dist-cjs/ (.js, .d.ts, .map) and build-test/test/ (.js). Folders too.
 */
function mapPath(p) {
  const trailing = p.endsWith('/') && p.length > 1 ? '/' : '';
  const q = trailing ? p.slice(0, -1) : p;
  let m;
  if ((m = /^(dist|dist-cjs)(\/.*)?$/.exec(q))) {
    if (!m[2]) return p;
    const inner = m[2].slice(1);
    const ext = /(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/.exec(inner)?.[1] ?? '';
    const base = ext ? inner.slice(0, -ext.length) : inner;
    const mapped = mapSource(`src/${base}${ext ? '.ts' : ''}`);
    return `${m[1]}/${mapped.slice(4, ext ? -3 : undefined)}${ext}${trailing}`;
  }
  if ((m = /^build-test\/test(\/.*)?$/.exec(q))) {
    if (!m[1]) return p;
    const inner = m[1].slice(1);
    const js = inner.endsWith('.js');
    const mapped = mapSource(`test/${js ? inner.slice(0, -3) + '.ts' : inner}`);
    return `build-test/${js ? mapped.slice(0, -3) + '.js' : mapped}${trailing}`;
  }
  if (/^(src|test)\//.test(q)) {
    // An import names src/x.js for src/x.ts.
    const js = q.endsWith('.js') && !existsSync(join(root, q));
    const mapped = mapSource(js ? q.slice(0, -3) + '.ts' : q);
    return (js ? mapped.slice(0, -3) + '.js' : mapped) + trailing;
  }
  return p;
}

// ---- 1. moves --------------------------------------------------------------------

function walk(dir, out = []) {
  if (!existsSync(join(root, dir))) return out;
  for (const name of readdirSync(join(root, dir)).sort()) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = `${dir}/${name}`;
    if (statSync(join(root, p)).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const tracked = new Set(execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n'));
const moves = new Map(); // old -> new
const unplaced = [];
for (const f of [...walk('src'), ...walk('test')]) {
  const to = mapSource(f);
  if (to !== f) moves.set(f, to);
  else if (/^src\/[^/]+$/.test(f) && f !== 'src/index.ts') unplaced.push(f);
  else if (/^test\/[^/]+\.test\.ts$/.test(f)) unplaced.push(f);
}
for (const [from, to] of moves) {
  if (existsSync(join(root, to))) {
    console.error(`cannot move ${from}: ${to} exists already (merge them by hand)`);
    process.exitCode = 1;
    moves.delete(from);
  }
}
/** Where a file is after the moves (its current path if it stays). */
const after = (p) => moves.get(p) ?? p;

// ---- 2-4. rewrites, computed on the old tree, written after the moves -------------

const CODE = /\.(ts|mts|cts|js|mjs|cjs)$/;
const codeFiles = ['src', 'test', 'bench', 'examples', 'scripts', 'packages'].flatMap((d) => walk(d)).filter((f) => CODE.test(f) && !f.includes('/node_modules/'));
const textFiles = [
  ...codeFiles,
  ...walk('docs').filter((f) => f.endsWith('.md') && !f.startsWith('docs/api/')),
  ...['README.md', 'ARCHITECTURE.md', 'package.json', 'typedoc.json', '.ci/run', 'eslint.config.js', 'tsconfig.json'].filter((f) =>
    existsSync(join(root, f)),
  ),
];

function relSpec(fromFile, target) {
  let s = posix.relative(posix.dirname(fromFile), target);
  if (!s.startsWith('.')) s = `./${s}`;
  return s;
}

/** Relative specifiers in code: resolved from where the file was, re-aimed from where it goes. */
function rewriteSpecifiers(file, text) {
  const re = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*|\bnew URL\(\s*)(['"`])(\.{1,2}\/[^'"`$]*)\2/g;
  return text.replace(re, (all, lead, q, spec) => {
    const target = posix.normalize(posix.join(posix.dirname(file), spec));
    if (target.startsWith('..')) return all;
    const mapped = mapPath(target);
    const moved = after(mapped.endsWith('.js') ? mapped.slice(0, -3) + '.ts' : mapped);
    const finalTarget = mapped.endsWith('.js') && moved.endsWith('.ts') ? moved.slice(0, -3) + '.js' : mapped;
    const spec2 = relSpec(after(file), finalTarget);
    return spec2 === spec ? all : `${lead}${q}${spec2}${q}`;
  });
}

/** Repository paths written out: 'src/runc/x.ts', './dist/runc/index.js', '/opt/fdpass/build-test/test/systemd'. */
function rewritePaths(text) {
  const slash = /(\.\/)?\b((?:dist-cjs|dist|build-test\/test|src|test)\/[\w./-]*[\w/])/g;
  text = text.replace(slash, (all, dot, p, offset, whole) => {
    const before = whole.slice(Math.max(0, offset - 3), offset);
    if (before.endsWith('../') || (!dot && /(^|[^\w}])\.\/$/.test(before)) || /[\w.@-]$/.test(before)) return all;
    const mapped = mapPath(p);
    return mapped === p ? all : `${dot ?? ''}${mapped}`;
  });
  // A test's helper for a built module: dist('io/backend.js').
  text = text.replace(/\bdist\((['"])([\w./-]+)\1\)/g, (all, q, p) => {
    const mapped = mapPath(`dist/${p}`).slice(5);
    return mapped === p ? all : `dist(${q}${mapped}${q})`;
  });
  const joined = /(['"])(dist-cjs|dist|src|test|build-test)\1((?:\s*,\s*(['"])[\w.-]+\4)+)/g;
  return text.replace(joined, (all, q, head, rest) => {
    const segs = [head, ...[...rest.matchAll(/(['"])([\w.-]+)\1/g)].map((m) => m[2])];
    const p = segs.join('/');
    const mapped = mapPath(p);
    if (mapped === p) return all;
    return mapped
      .split('/')
      .map((s) => `${q}${s}${q}`)
      .join(', ');
  });
}

const changed = new Map(); // path after the moves -> text
for (const f of textFiles) {
  const text = readFileSync(join(root, f), 'utf8');
  let next = CODE.test(f) ? rewriteSpecifiers(f, text) : text;
  next = rewritePaths(next);
  if (f === 'src/native.ts' || f === 'src/base/native.ts') next = next.replace("const root = join(here, '..');", "const root = join(here, '..', '..');");
  if (next !== text) changed.set(after(f), next);
}

// ---- apply ------------------------------------------------------------------------

for (const [from, to] of moves) {
  log(`move ${from} -> ${to}`);
  if (dry) continue;
  mkdirSync(dirname(join(root, to)), { recursive: true });
  if (tracked.has(from)) execFileSync('git', ['mv', from, to], { cwd: root });
  else renameSync(join(root, from), join(root, to));
}
for (const [f, text] of changed) {
  log(`rewrite ${f}`);
  if (!dry) writeFileSync(join(root, f), text);
}
if (dry) process.exit();

// Folders the moves emptied.
function pruneEmpty(dir) {
  if (!isDir(dir)) return;
  for (const name of readdirSync(join(root, dir))) if (isDir(`${dir}/${name}`)) pruneEmpty(`${dir}/${name}`);
  if (dir !== 'src' && dir !== 'test' && readdirSync(join(root, dir)).length === 0) {
    rmdirSync(join(root, dir));
    log(`remove the empty folder ${dir}`);
  }
}
pruneEmpty('src');
pruneEmpty('test');

// ---- 4. protocols reach the layers below through src/protocols/internal.ts ---------

const INTERNAL = 'src/protocols/internal.ts';
/** Names a module marks @internal (stripInternal drops them from its .d.ts). */
function internalNames(file) {
  const text = readFileSync(join(root, file), 'utf8');
  const names = new Set();
  for (const m of text.matchAll(/\/\*\*((?:(?!\*\/)[^])*)\*\/\s*export (?:declare )?(?:async )?(?:function|const|let|class|interface|type|enum) (\w+)/g)) {
    if (m[1].includes('@internal')) names.add(m[2]);
  }
  return names;
}

function gateway() {
  if (!existsSync(join(root, INTERNAL))) return;
  let internal = readFileSync(join(root, INTERNAL), 'utf8');
  const exported = new Set();
  for (const m of internal.matchAll(/export (?:type )?\{([^}]*)\}/g)) {
    for (const n of m[1].split(',')) {
      const name = n.trim().replace(/^type\s+/, '').split(/\s+as\s+/).pop();
      if (name) exported.add(name);
    }
  }
  const additions = new Map(); // module spec (from internal.ts) -> { values: Set, types: Set, internal: Set }
  const protocolFiles = walk('src/protocols').filter((f) => f.endsWith('.ts') && f !== INTERNAL);
  for (const file of protocolFiles) {
    const own = file.split('/').slice(0, 3).join('/'); // src/protocols/<name>
    const original = readFileSync(join(root, file), 'utf8');
    let text = original;
    const names = []; // { name, alias, type, kind: 'import' | 'export' }
    let first = -1;
    let removed = false;
    const decl = /^(import|export)(\s+type)?\s*\{([^}]*)\}\s*from\s*'(\.{1,2}\/[^']+)';[ \t]*\n/gm;
    text = text.replace(decl, (all, kind, typeAll, list, spec, offset) => {
      const target = posix.normalize(posix.join(posix.dirname(file), spec));
      const ts = target.replace(/\.js$/, '.ts');
      if (ts === INTERNAL && kind === 'export') return all;
      if (ts !== INTERNAL && (ts.startsWith(`${own}/`) || ts.startsWith('src/protocols/'))) return all;
      if (ts !== INTERNAL && !existsSync(join(root, ts))) return all;
      const marked = ts === INTERNAL ? new Set() : internalNames(ts);
      for (const raw of list.split(',')) {
        const n = raw.trim();
        if (!n) continue;
        const type = Boolean(typeAll) || n.startsWith('type ');
        const [name, alias] = n.replace(/^type\s+/, '').split(/\s+as\s+/);
        names.push({ name, alias, type, kind });
        if (ts !== INTERNAL && !exported.has(name)) {
          const key = relSpec(INTERNAL, target);
          if (!additions.has(key)) additions.set(key, { values: new Set(), types: new Set(), internal: new Set() });
          const a = additions.get(key);
          if (marked.has(name)) a.internal.add(name);
          else if (type) a.types.add(name);
          else a.values.add(name);
          exported.add(name);
        } else if (ts !== INTERNAL && !type) {
          // Re-exported as a type only so far, now needed as a value.
          const key = relSpec(INTERNAL, target);
          const a = additions.get(key);
          if (a?.types.has(name)) {
            a.types.delete(name);
            a.values.add(name);
          }
        }
      }
      if (first < 0) first = offset;
      removed = true;
      return '\u0000';
    });
    if (!removed) continue;
    const imports = names.filter((n) => n.kind === 'import');
    const exportsFrom = names.filter((n) => n.kind === 'export');
    const seen = new Set();
    const fmt = (n) => `${n.type ? 'type ' : ''}${n.name}${n.alias ? ` as ${n.alias}` : ''}`;
    const uniq = (list) =>
      list.filter((n) => {
        const k = `${n.kind}:${n.alias ?? n.name}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
    const lines = [];
    for (const [kind, list] of [
      ['import', uniq(imports)],
      ['export', uniq(exportsFrom)],
    ]) {
      if (list.length === 0) continue;
      const allTypes = list.every((n) => n.type);
      const body = list.map((n) => (allTypes ? fmt({ ...n, type: false }) : fmt(n))).join(', ');
      lines.push(`${kind}${allTypes ? ' type' : ''} { ${body} } from '${relSpec(file, INTERNAL.replace(/\.ts$/, '.js'))}';\n`);
    }
    let done = false;
    text = text.replace(/\u0000/g, () => {
      if (done) return '';
      done = true;
      return lines.join('');
    });
    if (text === original) continue;
    log(`route ${file} through ${INTERNAL}`);
    writeFileSync(join(root, file), text);
  }
  if (additions.size === 0) return;
  let block = '';
  for (const [spec, a] of [...additions].sort(([x], [y]) => x.localeCompare(y))) {
    if (a.values.size) block += `export { ${[...a.values].sort().join(', ')} } from '${spec}';\n`;
    if (a.types.size) block += `export type { ${[...a.types].sort().join(', ')} } from '${spec}';\n`;
    if (a.internal.size) block += `/** @internal */\nexport { ${[...a.internal].sort().join(', ')} } from '${spec}';\n`;
  }
  internal = internal.replace(/\n*$/, '\n') + block;
  log(`extend ${INTERNAL}: ${[...additions.values()].reduce((n, a) => n + a.values.size + a.types.size + a.internal.size, 0)} name(s)`);
  writeFileSync(join(root, INTERNAL), internal);
}
gateway();

// Prettier, as `npm run format` does, on what was rewritten under src/ and test/.
const prettier = join(root, 'node_modules', '.bin', 'prettier');
const formatted = [...changed.keys(), ...walk('src/protocols')].filter((f) => /^(src|test)\/.*\.(ts|mts|mjs)$/.test(f) && existsSync(join(root, f)));
if (formatted.length > 0 && existsSync(prettier)) execFileSync(prettier, ['--write', '--log-level=warn', ...new Set(formatted)], { cwd: root, stdio: 'inherit' });
else if (formatted.length > 0) log('prettier is not installed here: run npm run format');

for (const f of unplaced) log(`NOT PLACED: ${f}: move it to its layer by hand and add it to SRC_FILES or TEST_FILES`);
log(`${moves.size} file(s) moved, ${changed.size} rewritten`);
