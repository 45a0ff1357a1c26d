// An http server answering "ok" with 2 workers, clustered three ways:
//   node cluster-server.mjs rr|none|fdpass [workers]
// rr: node:cluster's default (round robin, the primary accepts and hands
// each socket over with child_process.send); none: SCHED_NONE (workers
// accept from the shared socket); fdpass: fdpass/cluster.
// The primary prints "ready PORT" once every worker listens, then obeys
// lines on stdin: "counts" (prints "counts [requests per worker]" and
// resets them), "kill" (SIGKILLs the oldest worker; a new one is forked),
// "quit". With fdpass it prints "exit PID INFLIGHT REDISPATCHED" for each
// worker that goes.
import cluster from 'node:cluster';
import http from 'node:http';
import { createInterface } from 'node:readline';

const mode = process.argv[2];
const workers = Number(process.argv[3] ?? 2);
if (mode === 'none') cluster.schedulingPolicy = cluster.SCHED_NONE;
else cluster.schedulingPolicy = cluster.SCHED_RR;

if (cluster.isPrimary) {
  let fdpassPrimary = null;
  let port = 0;
  let quitting = false;
  if (mode === 'fdpass') {
    const { ClusterPrimary } = await import('fdpass/cluster');
    fdpassPrimary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, fork: () => cluster.fork(), workers });
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
  cluster.on('message', (worker, msg) => {
    if (msg.listening) {
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
      oldest?.process.kill('SIGKILL');
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
  server.on('listening', () => process.send({ listening: true, port: server.address().port }));
  if (mode === 'fdpass') {
    const { serve } = await import('fdpass/cluster');
    serve(server);
  } else {
    server.listen(Number(process.env.BENCH_PORT), '127.0.0.1');
  }
}
