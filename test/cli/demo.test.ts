import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';

const cli = join(repoRoot, 'dist', 'cli', 'main.js');

test('fdpass demo --help, and a bad flag', () => {
  const h = spawnSync(process.execPath, [cli, 'demo', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  for (const flag of ['--duration', '--restarts', '--concurrency']) assert.match(h.stdout, new RegExp(flag));
  const top = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' });
  assert.match(top.stdout, /demo\s+restart an HTTP server/);
  const bad = spawnSync(process.execPath, [cli, 'demo', '--restarts', 'many'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--restarts must be an integer/);
  const unknown = spawnSync(process.execPath, [cli, 'demo', '--nope'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
});

test('fdpass demo with short settings: restarts under load, zero failed, JSON summary last', async () => {
  const child = spawn(process.execPath, [cli, 'demo', '--duration', '4', '--restarts', '3', '--concurrency', '6'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  const lines = out.trim().split('\n');
  assert.equal(code, 0, `${out}\n${err}`);
  const summary = JSON.parse(lines[lines.length - 1]!) as {
    requests: number;
    failed: number;
    restarts: number;
    requestsPerGeneration: Record<string, number>;
    longestPauseMs: number;
    forcedAtDeadline: number;
    inFlightAtHandoff: number[];
    keepAliveReused: number;
    newConnections: number;
  };
  assert.equal(summary.failed, 0);
  assert.equal(summary.restarts, 3);
  assert.equal(summary.forcedAtDeadline, 0);
  assert.deepEqual(Object.keys(summary.requestsPerGeneration).sort(), ['1', '2', '3', '4']);
  const sum = Object.values(summary.requestsPerGeneration).reduce((a, b) => a + b, 0);
  assert.equal(sum, summary.requests);
  assert.ok(summary.keepAliveReused > 0 && summary.newConnections > 0);
  // Requests in flight at the handoffs, all completed (failed and forced 0
  // above): the demo's load keeps 1 request in 10 slow (100 ms) on each of
  // its 5 keep-alive connections, which stay with the old generation until it
  // drains, so at a handoff one is running unless all five are between slow
  // ones at once; at none of three handoffs would be a broken count.
  assert.equal(summary.inFlightAtHandoff.length, 3);
  assert.ok(
    summary.inFlightAtHandoff.every((n) => Number.isInteger(n) && n >= 0) && summary.inFlightAtHandoff.some((n) => n > 0),
    `in flight at the handoffs: ${summary.inFlightAtHandoff}`,
  );
  // ... and those are the numbers each draining generation reported.
  const logged = [...out.matchAll(/generation \d+ drains (\d+) in-flight request/g)].map((m) => Number(m[1]));
  assert.deepEqual(logged, summary.inFlightAtHandoff);
  assert.equal(typeof summary.longestPauseMs, 'number');
  for (let i = 1; i <= 3; i++)
    assert.ok(
      lines.some((l) => l.includes(`restart ${i}: generation ${i + 1}`)),
      out,
    );
  assert.ok(
    lines.some((l) => /\d+ requests, 0 failed/.test(l)),
    out,
  );
});
