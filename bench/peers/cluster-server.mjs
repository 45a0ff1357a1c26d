// An http server answering "ok" with 2 workers, clustered four ways:
//   node cluster-server.mjs rr|none|fdpass|reuseport [workers]
// rr: node:cluster's default (round robin, the primary accepts and hands
// each socket over with child_process.send); none: SCHED_NONE (workers
// accept from the shared socket); fdpass: fdpass/cluster's default (round
// robin, its primary accepts and passes fds in batches); reuseport:
// fdpass/cluster with schedule 'reuseport' (each worker accepts from its own
// socket of a SO_REUSEPORT group; the primary takes over a dead one's).
// The primary prints "ready PORT" once every worker listens, then obeys
// lines on stdin: "counts" (prints "counts [requests per worker]" and
// resets them), "kill" (SIGKILLs the oldest worker, a new one is forked, and
// prints "killed PID HELD": the sockets in its fd table other than those it
// had when it began to listen (stdio, channels, listener), counted while it is
// stopped just before the SIGKILL: the connections it was serving when it
// died), "quit". With fdpass and reuseport it prints "exit PID INFLIGHT
// REDISPATCHED" for each worker that goes.
import cluster from 'node:cluster';
import http from 'node:http';
import { readdirSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** The sockets in process `pid`'s fd table ('socket:[inode]'), from /proc. */
function sockets(pid) {
  const out = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:')) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

const mode = process.argv[2];
const workers = Number(process.argv[3] ?? 2);
if (mode === 'none') cluster.schedulingPolicy = cluster.SCHED_NONE;
else cluster.schedulingPolicy = cluster.SCHED_RR;

if (cluster.isPrimary) {
  let fdpassPrimary = null;
  let port = 0;
  let quitting = false;
  if (mode === 'fdpass' || mode === 'reuseport') {
    const { ClusterPrimary } = await import('fdpass/cluster');
    fdpassPrimary = await ClusterPrimary.start({
      listen: { port: 0, host: '127.0.0.1' },
      fork: () => cluster.fork(),
      workers,
      schedule: mode === 'reuseport' ? 'reuseport' : 'round-robin',
    });
    fdpassPrimary.on('workerExit', (e) => console.log(`exit ${e.pid} ${e.inFlight} ${e.redispatched}`));
    port = fdpassPrimary.address().port;
  } else {
    for (let i = 0; i < workers; i++) cluster.fork();
    cluster.on('exit', () => {
      if (!quitting) cluster.fork();
    });
  }
  let listening = 0;
  const pendingCounts = new Map();
  const baseline = new Map();
  cluster.on('message', (worker, msg) => {
    if (msg.listening) {
      baseline.set(worker.process.pid, msg.sockets);
      port ||= msg.port;
      if (++listening === workers) console.log(`ready ${port}`);
    } else if ('count' in msg) {
      pendingCounts.get('r')?.(worker, msg.count);
    }
  });
  createInterface({ input: process.stdin }).on('line', async (line) => {
    if (line === 'counts') {
      const live = Object.values(cluster.workers).filter((w) => w.isConnected());
      const counts = await new Promise((resolve) => {
        const got = [];
        pendingCounts.set('r', (_w, n) => {
          got.push(n);
          if (got.length === live.length) resolve(got);
        });
        for (const w of live) w.send({ cmd: 'count' });
      });
      console.log(`counts ${JSON.stringify(counts)}`);
    } else if (line === 'kill') {
      const oldest = Object.values(cluster.workers).sort((a, b) => a.id - b.id)[0];
      if (oldest) {
        const pid = oldest.process.pid;
        oldest.process.kill('SIGSTOP');
        let held = -1;
        try {
          const before = new Set(baseline.get(pid) ?? []);
          held = sockets(pid).filter((s) => !before.has(s)).length;
        } finally {
          oldest.process.kill('SIGKILL');
        }
        console.log(`killed ${pid} ${held}`);
      }
    } else if (line === 'quit') {
      quitting = true;
      await fdpassPrimary?.close();
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      process.exit(0);
    }
  });
  process.stdin.on('end', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(0);
  });
} else {
  let count = 0;
  const server = http.createServer((req, res) => {
    count++;
    res.end('ok');
  });
  process.on('message', (msg) => {
    if (msg.cmd === 'count') {
      process.send({ count });
      count = 0;
    }
  });
  // Before any connection: what the worker holds besides its connections.
  server.on('listening', () => process.send({ listening: true, port: server.address().port, sockets: sockets(process.pid) }));
  if (mode === 'fdpass' || mode === 'reuseport') {
    const { serve } = await import('fdpass/cluster');
    serve(server);
  } else {
    server.listen(Number(process.env.BENCH_PORT), '127.0.0.1');
  }
}
