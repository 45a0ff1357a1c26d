// Node's own way: child_process.send(message, handle). The receiver forks the
// sender, which sends one net.Server handle per message and waits for each
// to be acknowledged; the receiver closes every handle it gets.
//
//   child-process-peer.mjs recv COUNT WARMUP   (forks itself as the sender)
import { fork } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { report } from './report.mjs';

const [mode, countArg, warmupArg] = process.argv.slice(2);
const count = Number(countArg);
const NAME = '/dev/ptmx';

if (mode === 'recv') {
  const warmup = Number(warmupArg);
  const child = fork(fileURLToPath(import.meta.url), ['send', String(count)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let t0 = process.hrtime.bigint();
  let i = 0;
  await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (i === count ? resolve() : reject(new Error(`sender exited (${code}) after ${i} messages`))));
    child.on('message', (msg, handle) => {
      if (msg !== NAME || !handle) return reject(new Error('message without a handle'));
      if (i === warmup) t0 = process.hrtime.bigint();
      handle.close();
      if (++i === count) {
        report(count - warmup, t0);
        child.disconnect();
      }
    });
  });
} else if (mode === 'send') {
  const dir = mkdtempSync(join(tmpdir(), 'fdpass-bench-cp-'));
  const server = createServer();
  await new Promise((resolve) => server.listen(join(dir, 's'), resolve));
  for (let i = 0; i < count; i++) {
    await new Promise((resolve, reject) => process.send(NAME, server, (err) => (err ? reject(err) : resolve())));
  }
  server.close();
  rmSync(dir, { recursive: true, force: true });
  process.on('disconnect', () => process.exit(0));
} else {
  throw new Error(`unknown mode ${mode}`);
}
