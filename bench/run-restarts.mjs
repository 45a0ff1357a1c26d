// npm run bench -- --only=run: failed requests per restart under the same
// wrk load, fdpass run (SIGHUP) beside nodemon (a file change), `pm2 restart`
// (fork mode) and `pm2 reload` (cluster mode, 2 workers); and the time from
// the restart's start to a new process serving. nodemon and PM2 come from
// FDPASS_NODEMON and FDPASS_PM2 (CI installs both from npm); absent, their
// rows say so. wrk counts each refused connect as a socket error: a restart
// that refuses connections fails more "requests" than wrk completed.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { wrkProblem } from './cluster.mjs';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function pidOf(port) {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      })
      .on('error', () => resolve(null));
  });
}

function startWrk(port) {
  const child = spawn('wrk', ['-t1', '-c8', '-d300s', `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (d) => (text += d));
  const done = once(child, 'exit');
  return async () => {
    child.kill('SIGINT');
    await done;
    const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
    const errors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
    return {
      requests: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0),
      failed: errors + Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    };
  };
}

/** Poll until the server answers from a pid other than `old` (nodemon has no ready signal). */
async function servedByAnother(port, old) {
  for (;;) {
    const b = await pidOf(port);
    if (b !== null && b !== old) return b;
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function fdpassRun(restarts, dir) {
  const port = await freePort();
  writeFileSync(
    join(dir, 'server.mjs'),
    `import http from 'node:http';\nimport { listenStored } from 'fdpass/systemd';\nawait listenStored(http.createServer((q, s) => s.end(String(process.pid))), 'http', ${port});\n`,
  );
  const sup = spawn(
    process.execPath,
    [join(root, 'dist/cli/main.js'), 'run', '-l', `127.0.0.1:${port}=http`, '--', process.execPath, 'server.mjs'],
    {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  const waiters = [];
  sup.stderr.on('data', (d) => {
    err += d;
    for (const w of waiters.splice(0)) {
      if (w.test()) w.resolve();
      else waiters.push(w);
    }
  });
  const until = (test) => new Promise((resolve) => (test() ? resolve() : waiters.push({ test, resolve })));
  const count = (re) => (err.match(re) ?? []).length;
  await until(() => count(/ready after/g) > 0);
  const stop = startWrk(port);
  await pidOf(port);
  const times = [];
  for (let i = 0; i < restarts; i++) {
    const t0 = performance.now();
    sup.kill('SIGHUP');
    await until(() => count(/reloaded: /g) > i);
    times.push(performance.now() - t0);
    await until(() => count(/exited with/g) > i);
  }
  const r = await stop();
  sup.kill('SIGTERM');
  await once(sup, 'exit');
  return { name: 'fdpass run (SIGHUP)', restarts, ...r, msToServing: times };
}

async function nodemon(restarts, dir) {
  const bin = process.env.FDPASS_NODEMON ?? '/work/rt/node_modules/nodemon/bin/nodemon.js';
  if (!existsSync(bin))
    return { name: 'nodemon (file change)', skipped: 'nodemon not found: npm install nodemon; FDPASS_NODEMON=.../nodemon/bin/nodemon.js' };
  const port = await freePort();
  writeFileSync(
    join(dir, 'plain.mjs'),
    `import http from 'node:http';\nhttp.createServer((q, s) => s.end(String(process.pid))).listen(${port}, '127.0.0.1');\n`,
  );
  writeFileSync(join(dir, 'touch.mjs'), '0');
  const mon = spawn(process.execPath, [bin, '--quiet', '--watch', 'touch.mjs', '--delay', '0', 'plain.mjs'], { cwd: dir, stdio: 'ignore' });
  let pid = await servedByAnother(port, null);
  const stop = startWrk(port);
  const times = [];
  for (let i = 0; i < restarts; i++) {
    const t0 = performance.now();
    writeFileSync(join(dir, 'touch.mjs'), String(i + 1));
    pid = await servedByAnother(port, pid);
    times.push(performance.now() - t0);
  }
  const r = await stop();
  mon.kill('SIGTERM');
  await once(mon, 'exit');
  return { name: 'nodemon (file change)', restarts, ...r, msToServing: times };
}

async function pm2(restarts, dir, mode) {
  const name = mode === 'fork' ? 'pm2 restart (fork mode)' : 'pm2 reload (cluster mode, 2 workers)';
  const bin = process.env.FDPASS_PM2 ?? '/work/rt/node_modules/pm2/bin/pm2';
  if (!existsSync(bin)) return { name, skipped: 'pm2 not found: npm install pm2; FDPASS_PM2=.../pm2/bin/pm2' };
  const port = await freePort();
  const app = join(dir, `pm2-${mode}.cjs`);
  writeFileSync(app, `require('node:http').createServer((q, s) => s.end(String(process.pid))).listen(${port}, '127.0.0.1');\n`);
  // A PM2 daemon of our own (PM2_HOME), killed at the end.
  const env = { ...process.env, PM2_HOME: join(dir, `.pm2-${mode}`) };
  const pm2Sync = (...args) => {
    const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`pm2 ${args.join(' ')}: ${r.stderr}`);
  };
  try {
    pm2Sync('start', app, '--name', `bench-${mode}`, ...(mode === 'fork' ? [] : ['-i', '2']));
    const pids = new Set([await servedByAnother(port, null)]);
    const stop = startWrk(port);
    const times = [];
    for (let i = 0; i < restarts; i++) {
      const t0 = performance.now();
      pm2Sync(mode === 'fork' ? 'restart' : 'reload', `bench-${mode}`);
      // Served by a process that did not serve before.
      for (;;) {
        const b = await pidOf(port);
        if (b !== null && !pids.has(b)) {
          pids.add(b);
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      times.push(performance.now() - t0);
    }
    const r = await stop();
    return { name, restarts, ...r, msToServing: times };
  } finally {
    spawnSync(process.execPath, [bin, 'kill'], { cwd: dir, env, stdio: 'ignore', timeout: 60_000 });
  }
}

export async function runRestartBench({ quick, log }) {
  const restarts = quick ? 3 : 10;
  const problem = wrkProblem();
  if (problem) {
    log(`  skipped: ${problem}`);
    return { skipped: problem };
  }
  const dir = mkdtempSync(join(root, 'bench', '.run-'));
  try {
    const rows = [
      await fdpassRun(restarts, dir),
      await nodemon(restarts, dir),
      await pm2(restarts, dir, 'fork'),
      await pm2(restarts, dir, 'cluster'),
    ];
    for (const r of rows) {
      if (r.skipped) log(`  ${r.name}: skipped (${r.skipped})`);
      else {
        const t = [...r.msToServing].sort((a, b) => a - b);
        log(
          `  ${r.name}: ${r.failed} failed of ${r.requests} requests over ${r.restarts} restarts (${(r.failed / r.restarts).toFixed(1)} per restart); restart to serving: median ${t[t.length >> 1].toFixed(0)} ms (min ${t[0].toFixed(0)}, max ${t[t.length - 1].toFixed(0)})`,
        );
      }
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
