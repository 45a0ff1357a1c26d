// node:cluster with fdpass/cluster: the primary accepts connections in
// batches and hands their fds to the workers; each worker's http.Server
// serves them as if it had accepted them. A worker killed mid-run is
// replaced, and the request whose connection it had not yet taken is served
// by the other worker.
// Run: node examples/cluster.mjs
import cluster from 'node:cluster';
import http from 'node:http';
import { ClusterPrimary, serve } from 'fdpass/cluster';

if (cluster.isPrimary) {
  const primary = await ClusterPrimary.start({
    listen: { port: 0, host: '127.0.0.1' }, // a fixed port in real life
    fork: () => cluster.fork(),
    workers: 2,
  });
  const { port } = primary.address();
  // Connections wait in the kernel's backlog until a worker serves; here we
  // wait for both, so that round robin has two to choose from.
  await new Promise((resolve) => {
    let n = 0;
    primary.on('listening', () => ++n === 2 && resolve());
  });
  const get = () =>
    new Promise((resolve, reject) => {
      http.get({ port, host: '127.0.0.1', agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
  const served = {};
  for (let i = 0; i < 6; i++) {
    const id = await get();
    served[id] = (served[id] ?? 0) + 1;
  }
  console.log(`6 requests, round robin: ${Object.values(served).join(' + ')}`);

  // Kill worker 1 and send requests at once: none fails, a new worker 3 comes.
  const respawned = new Promise((resolve) => cluster.once('fork', resolve));
  cluster.workers[1].process.kill('SIGKILL');
  const replies = await Promise.all(Array.from({ length: 4 }, get));
  await respawned;
  console.log(`after a SIGKILL: ${replies.length} of 4 answered, worker ${Object.keys(cluster.workers).at(-1)} forked`);

  primary.removeAllListeners();
  await primary.close(); // stop accepting; workers' servers close and drain
  for (const worker of Object.values(cluster.workers)) worker.kill();
} else {
  // The only change in a worker: serve(server) instead of server.listen(port).
  serve(http.createServer((req, res) => res.end(`worker ${cluster.worker.id}`)));
}
