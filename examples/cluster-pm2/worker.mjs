// A worker, a PM2 cluster-mode app: serve() where it called listen().
import http from 'node:http';
import { serve } from 'fdpass/cluster';

const server = http.createServer((req, res) => res.end(`${process.pid}\n`));
// Started before the primary: ECONNREFUSED here; exit, and PM2 starts it again.
server.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
serve(server);
// pm2 reload / stop: finish what is in flight, then go.
process.on('SIGINT', () => server.close(() => process.exit(0)));
