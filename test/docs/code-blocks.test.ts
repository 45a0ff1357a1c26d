// Every ```js and ```ts block of the README, ARCHITECTURE.md and the guides
// in docs/ runs as pasted, unless its first
// line says `// Fragment`. Each runs as an ES module (.mjs) inside this
// package, so that 'fdpass' resolves to this checkout as it would to an
// installed copy; ts blocks are transpiled first (types stripped, nothing
// else). Servers get the minimum of declared context below (a free port, a
// runtime folder), are asked over HTTP, then stopped with SIGTERM.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { delay, killAtEnd, docBlock, repoRoot, testDir } from '../helpers.js';
import { exited } from '../lines.js';
import { allPackages } from '../tools.js';

interface Block {
  /** README.md, ARCHITECTURE.md or docs/<guide>.md. */
  file: string;
  line: number;
  lang: 'js' | 'ts';
  code: string;
}

/** The documents whose code blocks run: the README, ARCHITECTURE.md and every guide in docs/. */
function docFiles(): string[] {
  const docs = join(repoRoot, 'docs');
  const guides = existsSync(docs) ? readdirSync(docs).filter((f) => f.endsWith('.md')) : [];
  return ['README.md', 'ARCHITECTURE.md', ...guides.sort().map((f) => `docs/${f}`)];
}

function readmeBlocks(): Block[] {
  const blocks: Block[] = [];
  for (const file of docFiles()) {
    const text = readFileSync(join(repoRoot, file), 'utf8');
    const re = /^```(js|ts)\n([^]*?)^```$/gm;
    for (let m; (m = re.exec(text)) !== null;) {
      blocks.push({ file, line: text.slice(0, m.index).split('\n').length, lang: m[1] as 'js' | 'ts', code: m[2]! });
    }
  }
  return blocks;
}

/** What a block needs around it, found by a line of its code. */
interface Context {
  match: string;
  /** Environment the block reads (a port, a folder), given the test's temp dir. */
  env?: (dir: string) => Record<string, string>;
  /** What it prints, when it ends by itself (a function: read when the block has run, not at import). */
  stdout?: RegExp | (() => string);
  /**
   * Another test runs it with what it needs (a real runc, say): that file,
   * which takes it with docBlock(doc, heading) from test/helpers.ts.
   */
  runBy?: { file: string; heading: string };
  /** A server: it runs until SIGTERM; it must answer HTTP with `body` first. */
  serve?: { body: RegExp; ready?: (dir: string) => string; exit: 0 | 'SIGTERM' };
}

/** What the README's blocks send: /etc/hostname (they open it; a machine without it fails them, not this file's import). */
const hostnameFile = (): string => readFileSync('/etc/hostname', 'utf8').trim();

const contexts: Context[] = [
  {
    match: 'serve(new SeccompNotifier(fds.seccompFd))',
    runBy: { file: 'test/protocols/seccomp/readme.test.ts', heading: '## A seccomp agent in ten lines' },
  },
  {
    match: "listenStored(server, 'http', 8080)",
    runBy: { file: 'test/protocols/systemd/real.test.ts', heading: '## Zero-downtime `systemctl restart`' },
  },
  { match: "await FdServer.listen('/tmp/fdpass-demo.sock')", stdout: () => `hostname ${hostnameFile()}\n` },
  { match: 'serverFromFd(fd, http.createServer', stdout: () => 'hi\n' },
  { match: 'const pids = await primary.reload();', stdout: /^reloaded: 2 new workers\n$/ },
  {
    match: "process.once('SIGTERM', () => primary.drain().then(() => process.exit(0)));",
    runBy: { file: 'test/protocols/cluster/reload.test.ts', heading: '## The whole app, primary included: under `fdpass run`' },
  },
  {
    match: "handoff.once('takeover', stop);",
    runBy: { file: 'test/protocols/cluster/reload.test.ts', heading: '## The whole app, primary included: through `fdpass/handoff`' },
  },
  { match: "SharedMemory.create(1 << 20, { name: 'frame'", stdout: () => 'hello through shared memory\n' },
  { match: 'view.remap(fds[1]);', stdout: () => '1\n2\n' },
  { match: 'FdStream.pair()', stdout: () => `HDR: file ${hostnameFile()}\n` },
  {
    match: 'await Handoff.start({ path: `${dir}/myapp-handoff.sock` })',
    env: (dir) => ({ PORT: '0', RUNTIME_DIRECTORY: dir }),
    // ready() puts the control socket in place; then SIGTERM drains and exits 0.
    serve: { body: /^hello from pid \d+\n$/, ready: (dir) => join(dir, 'myapp-handoff.sock'), exit: 0 },
  },
  {
    match: 'const [listener] = listenFds();',
    env: () => ({ PORT: '0' }),
    serve: { body: /^hello\n$/, exit: 'SIGTERM' },
  },
];

/** TCP ports process `pid` listens on, from /proc (no waiting on the network). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const row of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

const blocks = readmeBlocks();

/** Guides whose every code block another test file runs, by guide. */
const runsWholeDoc: Record<string, string> = { 'docs/run.md': 'test/cli/run.test.ts' };

describe('code blocks of the README and the guides', () => {
  test('the apt-get line for the full suite names every package test/tools.ts knows', () => {
    const readme = readFileSync(join(repoRoot, 'docs', 'development.md'), 'utf8');
    const line = /^apt-get install -y ((?:.+\\\n)*.+)$/m.exec(readme);
    assert.ok(line, 'no apt-get install -y line in docs/development.md');
    const listed = line[1]!.split(/[\s\\]+/);
    for (const pkg of allPackages()) assert.ok(listed.includes(pkg), `${pkg} is missing from docs/development.md's line: ${line[0]}`);
  });

  test('there are blocks, and each context names a block that exists', () => {
    assert.ok(blocks.length >= 10, `found ${blocks.length} blocks`);
    for (const c of contexts)
      assert.ok(
        blocks.some((b) => b.code.includes(c.match)),
        `no block of README.md or docs/ has: ${c.match}`,
      );
  });

  for (const block of blocks) {
    const first = block.code.split('\n')[0]!;
    const fragment = /^\/\/ Fragment\b/.test(first);
    test(`${block.file}:${block.line} (${block.lang}) ${fragment ? 'is marked as a fragment' : 'runs as pasted'}`, async (t) => {
      if (fragment) {
        assert.match(first, /^\/\/ Fragment[^:]*: \S/, 'a fragment says why it does not run on its own');
        return;
      }
      const whole = runsWholeDoc[block.file];
      if (whole !== undefined) {
        // A guide whose every block another test runs (with the servers and
        // the CLI they need): that file reads this guide and runs its blocks.
        const source = readFileSync(join(repoRoot, whole), 'utf8');
        assert.ok(source.includes(`every code block of ${block.file} runs here`), `${whole} says it runs every block of ${block.file}`);
        assert.ok(
          source.includes(
            `join(repoRoot, ${block.file
              .split('/')
              .map((x) => `'${x}'`)
              .join(', ')})`,
          ),
          `${whole} reads ${block.file}`,
        );
        return;
      }
      const ctx = contexts.find((c) => block.code.includes(c.match));
      if (ctx?.runBy !== undefined) {
        // The block that file runs is this one: found under that heading by
        // the same helper, and the file asks for that heading.
        const { file, heading } = ctx.runBy;
        assert.equal(docBlock(block.file, heading, block.lang), block.code, `the first ${block.lang} block under ${heading} is this one`);
        const source = readFileSync(join(repoRoot, file), 'utf8');
        assert.ok(source.includes(`docBlock('${block.file}', '${heading}'`), `${file} runs docBlock('${block.file}', '${heading}')`);
        return;
      }
      const dir = testDir(t, 'fdpass-readme-').dir;
      const code =
        block.lang === 'ts'
          ? ts.transpileModule(block.code, {
              compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
            }).outputText
          : block.code;
      // Inside the package, so that 'fdpass' resolves to this checkout.
      const scratch = join(repoRoot, 'build-test', 'readme');
      mkdirSync(scratch, { recursive: true });
      const file = join(scratch, `block-${block.file.replace(/\W/g, '-')}-${block.line}-${process.pid}.mjs`);
      writeFileSync(file, code);
      t.after(() => rmSync(file, { force: true }));
      const env = { ...process.env, ...(ctx?.env?.(dir) ?? {}) };
      const child = killAtEnd(t, spawn(process.execPath, [file], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] }));
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const end = exited(child);
      if (ctx?.serve) {
        const serve = ctx.serve;
        let ports: number[] = [];
        let done = false;
        void end.then(() => (done = true));
        // Up when it listens (and, if it says so, has put its file in place).
        for (let i = 0; i < 3000 && !done; i++) {
          ports = listeningPorts(child.pid!);
          if (ports.length > 0 && (!serve.ready || existsSync(serve.ready(dir)))) break;
          await delay(10);
        }
        assert.equal(done, false, `it exited before serving: ${stderr}`);
        assert.ok(ports.length > 0, `it never listened: ${stderr}`);
        const res = await fetch(`http://127.0.0.1:${ports[0]}/`, { headers: { connection: 'close' } });
        assert.match(await res.text(), serve.body);
        child.kill('SIGTERM');
        assert.equal(await end, serve.exit, stderr);
      } else {
        // A block that never ends is a server nobody declared: say so, not a runner timeout.
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<'running'>((res) => (timer = setTimeout(() => res('running'), 30_000)));
        const outcome = await Promise.race([end, limit]);
        clearTimeout(timer);
        assert.notEqual(
          outcome,
          'running',
          'it did not end within 30 s: a server? declare its context in test/docs/code-blocks.test.ts, or mark it // Fragment',
        );
        assert.equal(outcome, 0, stderr);
        if (ctx?.stdout !== undefined) {
          if (typeof ctx.stdout === 'function') assert.equal(stdout, ctx.stdout());
          else assert.match(stdout, ctx.stdout);
        }
      }
      assert.doesNotMatch(stderr, /Warning/, 'no Node warning');
    });
  }
});
