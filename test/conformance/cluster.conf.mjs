// fdpass/cluster on each runtime: a primary forks its workers, spreads
// connections over them, replaces them all with reload() and leaves with
// drain(). On Bun the workers run on Node: Bun's node:net and node:http
// cannot serve a socket by its fd, and serve() says so with a coded error.
import assert from 'node:assert/strict';
import { runChild, runtime, runtimeArgv, test, which } from './harness.mjs';

// The primary's program, and its workers' (the same file, argument 'worker').
// It prints the pids that answered before the reload (until both workers
// did), the pids reload() started, and 6 answers after it.
const PROGRAM = `
import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { ClusterPrimary, serve } from 'fdpass/cluster';

if (process.argv.includes('worker')) {
  serve(http.createServer((req, res) => res.end(String(process.pid))));
} else {
  const workerArgv = [...JSON.parse(process.env.WORKER_ARGV), fileURLToPath(import.meta.url), 'worker'];
  const workerEnv = { ...process.env };
  // Node workers of a Bun primary load Node's addon, not one FDPASS_NATIVE
  // chose for Bun (the musl prebuild under Bun's musl build).
  if (process.versions.bun) delete workerEnv.FDPASS_NATIVE;
  const primary = await ClusterPrimary.start({
    listen: { port: 0, host: '127.0.0.1' },
    schedule: process.env.SCHEDULE,
    fork: (env) => spawn(workerArgv[0], workerArgv.slice(1), { env: { ...workerEnv, ...env }, stdio: 'inherit' }),
    workers: 2,
  });
  let listening = 0;
  await new Promise((resolve) => primary.on('listening', () => ++listening === 2 && resolve()));
  const { port } = primary.address();
  const get = () =>
    new Promise((resolve, reject) =>
      http
        .get({ port, host: '127.0.0.1', agent: false }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve(body));
        })
        .on('error', reject),
    );
  const round = async () => {
    const pids = [];
    for (let i = 0; i < 6; i++) pids.push(Number(await get()));
    return pids;
  };
  // Under reuseport the kernel picks a worker by a hash of each connection's
  // addresses: 6 connections all reach one of 2 workers once in 32 runs.
  // Ask until both answered (64 connections all to one: once in 2^63).
  const before = [];
  while (new Set(before).size < 2 && before.length < 64) before.push(Number(await get()));
  const started = await primary.reload();
  const after = await round();
  await primary.drain();
  console.log(JSON.stringify({ before, started, after }));
}
`;

// Bun's workers run on Node (this runtime's own elsewhere, under the same emulator).
const node = runtime === 'bun' ? which('node') : null;
const workerPrefix = runtime === 'bun' ? [node] : runtimeArgv('').slice(0, -1);

for (const schedule of ['round-robin', 'reuseport']) {
  test(
    `${schedule}: a primary on this runtime serves over 2 workers, reload() replaces both, drain() waits for their exit`,
    async () => {
      const r = await runChild(PROGRAM, { env: { SCHEDULE: schedule, WORKER_ARGV: JSON.stringify(workerPrefix) }, timeout: 120_000 });
      assert.equal(r.code, 0, `exit ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}\n${r.stdout}\n${r.stderr}`);
      const { before, started, after } = JSON.parse(r.stdout.trim().split('\n').pop());
      assert.equal(new Set(before).size, 2, `requests before the reload reached both workers: ${before}`);
      assert.equal(started.length, 2, `reload() started 2 workers: ${started}`);
      for (const pid of after) assert.ok(started.includes(pid), `after the reload ${pid} answered, not one of ${started}`);
      for (const pid of before) assert.ok(!started.includes(pid), `${pid} served before the reload and was started by it`);
    },
    runtime === 'bun' && !node ? { needs: 'node not found on PATH (on Bun the cluster workers run on Node): install Node >= 20' } : {},
  );
}

test(
  "serve() on Bun: ERR_FDPASS_UNSUPPORTED_RUNTIME, before the server's type is looked at",
  async () => {
    const { serve } = await import('fdpass/cluster');
    const http = await import('node:http');
    assert.throws(() => serve(http.createServer()), { code: 'ERR_FDPASS_UNSUPPORTED_RUNTIME', message: /Node or Deno/ });
  },
  { only: ['bun'], why: 'Node and Deno serve (the tests above)' },
);
