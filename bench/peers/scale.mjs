// The scale runs of the benchmark (run with --expose-gc):
//
//   scale.mjs connections N FDBENCH   N connections open at once to one
//     FdServer (the C load generator FDBENCH makes them), each passing one fd:
//     time until all N fds are delivered, the server's peak RSS, fds leaked.
//   scale.mjs long-run N FDBENCH      N messages with one fd each through one
//     socket from an fdpass sender process; this process receives ('message'
//     event) and closes each fd: RSS growth after warm-up, fds before/after.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdServer, FdSocket } from 'fdpass';

const [mode, nArg, fdbench] = process.argv.slice(2);
const n = Number(nArg);
const MB = 1024 * 1024;
const fdCount = () => readdirSync('/proc/self/fd').length;
const peakRssMB = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const gc = globalThis.gc ?? (() => {});

function childDone(child, what) {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${what} exited ${code}: ${err.trim()}`))));
  });
}

if (mode === 'connections') {
  // A first child sets up libuv's SIGCHLD pipe, so that it is not counted as a leak.
  await childDone(spawn('true'), 'true');
  const fdsBefore = fdCount();
  const dir = mkdtempSync(join(tmpdir(), 'fdpass-bench-'));
  const server = await FdServer.listen({ path: join(dir, 's'), backlog: 4096 });
  let delivered = 0;
  const t0 = process.hrtime.bigint();
  const client = spawn(fdbench, ['connect-many', server.path, String(n)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const clientDone = childDone(client, 'fdbench connect-many');
  const seconds = await new Promise((resolve, reject) => {
    clientDone.catch(reject);
    server.on('connection', (sock) => {
      sock.recvFd().then(
        ({ fd }) => {
          closeSync(fd);
          sock.close();
          if (++delivered === n) resolve(Number(process.hrtime.bigint() - t0) / 1e9);
        },
        (err) => {
          sock.close();
          reject(err);
        },
      );
    });
  });
  const rssMB = peakRssMB();
  await clientDone;
  await server.close();
  for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
  const fdsAfter = fdCount();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ connections: n, delivered, seconds, rssMB, fdsBefore, fdsAfter })}\n`);
} else if (mode === 'long-run') {
  const [a, b] = FdSocket.pair('stream');
  const senderFd = a.release();
  const peer = join(dirname(fileURLToPath(import.meta.url)), 'fdpass-peer.mjs');
  const sender = spawn(process.execPath, ['--expose-gc', peer, 'send-await', String(n), '1'], {
    stdio: ['ignore', 'pipe', 'pipe', senderFd],
    env: { ...process.env, FDPASS_BENCH_STATS: '1' },
  });
  closeSync(senderFd);
  const senderDone = childDone(sender, 'fdpass sender');
  const warmup = Math.floor(n / 10);
  let rssWarm = 0;
  let fdsBefore = 0;
  const t0 = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    let i = 0;
    senderDone.catch(reject);
    b.on('error', reject);
    b.on('message', (m) => {
      for (const fd of m.fds) closeSync(fd);
      if (m.fds.length !== 1) reject(new Error(`message ${i}: ${m.fds.length} fds`));
      if (++i === warmup) {
        gc();
        rssWarm = process.memoryUsage.rss();
        fdsBefore = fdCount();
      }
      if (i === n) resolve();
    });
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  gc();
  const rssEnd = process.memoryUsage.rss();
  const fdsAfter = fdCount();
  await b.close();
  const senderStats = JSON.parse((await senderDone).trim().split('\n').pop());
  process.stdout.write(
    `${JSON.stringify({
      messages: n,
      seconds,
      receiverGrowthMB: (rssEnd - rssWarm) / MB,
      receiverRssMB: rssEnd / MB,
      receiverFdsBefore: fdsBefore,
      receiverFdsAfter: fdsAfter,
      senderGrowthMB: senderStats.growthMB,
      senderFdsBefore: senderStats.fdsBefore,
      senderFdsAfter: senderStats.fdsAfter,
    })}\n`,
  );
} else {
  throw new Error(`unknown mode ${mode}`);
}
