// fdpass run as a command: every code block of docs/run.md runs here as
// written (the port 8080 replaced by a free one), under Node, and the CLI
// once under Bun and once under Deno.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, repoRoot } from '../helpers.js';
import { getText } from '../protocols/supervisor/helpers.js';
import { exited } from '../lines.js';
import { needs, runtimePath, which } from '../tools.js';

const doc = readFileSync(join(repoRoot, 'docs', 'run.md'), 'utf8');
const blocks = [...doc.matchAll(/^```(\w+)\n([^]*?)^```$/gm)].map((m) => ({ lang: m[1]!, code: m[2]! }));

/** A folder inside the package (so that 'fdpass' resolves to this checkout), with fdpass and npx on PATH. */
function workspace(
  t: { after: (fn: () => void) => void },
  port: number,
  runtime: string[] = [process.execPath],
): { dir: string; env: NodeJS.ProcessEnv } {
  mkdirSync(join(repoRoot, 'build-test'), { recursive: true });
  const dir = mkdtempSync(join(repoRoot, 'build-test', 'docs-run-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, '.bin');
  mkdirSync(bin);
  const cli = join(repoRoot, 'dist', 'cli', 'main.js');
  writeFileSync(join(bin, 'fdpass'), `#!/bin/sh\nexec ${runtime.map((a) => `'${a}'`).join(' ')} '${cli}' "$@"\n`);
  writeFileSync(join(bin, 'npx'), `#!/bin/sh\n[ "$1" = fdpass ] && shift\nexec '${join(bin, 'fdpass')}' "$@"\n`);
  chmodSync(join(bin, 'fdpass'), 0o755);
  chmodSync(join(bin, 'npx'), 0o755);
  for (const b of blocks) {
    const name = /^\/\/ (\S+\.mjs)\n/.exec(b.code)?.[1];
    if (b.lang === 'js' && name) writeFileSync(join(dir, name), b.code.replaceAll('8080', String(port)));
  }
  return { dir, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NODE_DISABLE_COMPILE_CACHE: '1' } };
}

function shBlock(match: string): string {
  const b = blocks.find((x) => x.lang === 'sh' && x.code.includes(match));
  assert.ok(b, `docs/run.md has no sh block with ${match}`);
  return b.code.trim();
}

/** Run a command line; collect stderr; resolve `waitFor` once a line matches. */
function start(cmd: string[], ws: { dir: string; env: NodeJS.ProcessEnv }, t: { after: (fn: () => void) => void }) {
  const child = spawn(cmd[0]!, cmd.slice(1), { cwd: ws.dir, env: ws.env, stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters.splice(0)) {
      if (w.re.test(stderr)) w.resolve();
      else waiters.push(w);
    }
  });
  const waitFor = (re: RegExp): Promise<void> =>
    new Promise((resolve, reject) => {
      if (re.test(stderr)) return resolve();
      waiters.push({ re, resolve });
      child.once('exit', () => setImmediate(() => (re.test(stderr) ? resolve() : reject(new Error(`exited without ${re}: ${stderr}`)))));
    });
  return { child, waitFor, stderr: () => stderr };
}

const sh = (line: string, port: number): string[] => ['/bin/sh', '-c', `exec ${line.replaceAll('8080', String(port))}`];

async function serveReloadStop(p: ReturnType<typeof start>, port: number, child: ChildProcess): Promise<void> {
  await p.waitFor(/ready after \d+ ms/);
  const first = await getText(port);
  child.kill('SIGHUP');
  await p.waitFor(/reloaded: pid \d+ ready/);
  await p.waitFor(/exited with code 0/);
  const second = await getText(port);
  assert.match(first, /^hello from \d+\n$/);
  assert.notEqual(first, second);
  child.kill('SIGTERM');
  assert.equal(await exited(child), 0, p.stderr());
  assert.match(p.stderr(), /exiting with 0/);
}

describe('fdpass run: docs/run.md, block by block', () => {
  test(
    'fdpass run -l 8080=http -- node server.mjs: serves, SIGHUP reloads, SIGTERM exits with the status',
    { timeout: 120_000 },
    async (t) => {
      const port = await freePort();
      const ws = workspace(t, port);
      const p = start(sh(shBlock('-l 8080=http -- node server.mjs'), port), ws, t);
      await serveReloadStop(p, port, p.child);
    },
  );

  test('--control, and fdpass run --reload against it', { timeout: 120_000 }, async (t) => {
    const port = await freePort();
    const ws = workspace(t, port);
    const p = start(
      sh(shBlock('--control /tmp/app.ctl -- node'), port).map((a) => a.replace('/tmp/app.ctl', join(ws.dir, 'app.ctl'))),
      ws,
      t,
    );
    await p.waitFor(/ready after/);
    const r = spawnSync('/bin/sh', ['-c', shBlock('--reload').replace('/tmp/app.ctl', join(ws.dir, 'app.ctl'))], {
      cwd: ws.dir,
      env: ws.env,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /pid \d+ serves/);
    p.child.kill('SIGTERM');
    assert.equal(await exited(p.child), 0);
  });

  test('--watch: a change reloads', { timeout: 120_000 }, async (t) => {
    const port = await freePort();
    const ws = workspace(t, port);
    const p = start(sh(shBlock('--watch .'), port), ws, t);
    await p.waitFor(/ready after/);
    writeFileSync(join(ws.dir, 'changed.txt'), 'x');
    await p.waitFor(/reloaded: pid \d+ ready/);
    p.child.kill('SIGINT');
    assert.equal(await exited(p.child), 0);
  });

  test("the Dockerfile's ENTRYPOINT, as PID 1 of a new PID namespace when root", { timeout: 120_000 }, async (t) => {
    const port = await freePort();
    const ws = workspace(t, port);
    const docker = blocks.find((b) => b.lang === 'dockerfile')!.code;
    const argv = JSON.parse(/^ENTRYPOINT (.*)$/m.exec(docker)![1]!.replaceAll('8080', String(port))) as string[];
    const pid1 = process.getuid?.() === 0 && which('unshare') !== null;
    const p = start(pid1 ? ['unshare', '--pid', '--fork', '--kill-child', ...argv] : argv, ws, t);
    await p.waitFor(/ready after/);
    assert.match(await getText(port), /^hello from \d+\n$/);
    // PID 1 of the namespace is unshare's child: SIGTERM it, as docker stop does.
    const pid = pid1
      ? Number(readFileSync(`/proc/${p.child.pid}/task/${p.child.pid}/children`, 'utf8').trim().split(' ')[0])
      : p.child.pid!;
    process.kill(pid, 'SIGTERM');
    assert.equal(await exited(p.child), 0, p.stderr());
  });

  test('the library block', { timeout: 120_000 }, async (t) => {
    const port = await freePort();
    const ws = workspace(t, port);
    const code = blocks.find((b) => b.lang === 'js' && b.code.includes('Supervisor.start'))!.code;
    writeFileSync(join(ws.dir, 'lib.mjs'), code.replaceAll('8080', String(port)));
    const p = start([process.execPath, 'lib.mjs'], ws, t);
    assert.equal(await exited(p.child), 0, p.stderr());
    assert.match(p.stderr(), /reloaded: pid \d+ ready/);
  });
});

describe('fdpass run under other runtimes', () => {
  for (const [name, need, args] of [
    ['Bun', 'bun', []],
    ['Deno', 'deno', ['run', '-A', '--node-modules-dir=manual']],
  ] as const) {
    const bin = runtimePath(need);
    test(`under ${name}: serves, SIGHUP reloads, SIGTERM exits 0`, { ...needs(need), timeout: 120_000 }, async (t) => {
      const port = await freePort();
      const ws = workspace(t, port, [bin!, ...args]);
      const p = start(sh(shBlock('-l 8080=http -- node server.mjs'), port), ws, t);
      await serveReloadStop(p, port, p.child);
    });
  }
});
