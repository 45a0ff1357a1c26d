// The accepting side, a PM2 fork-mode app: listen on PORT, take the workers
// that connect on the channel FDPASS_CLUSTER names. PM2 starts the workers,
// so no `fork` here.
import { ClusterPrimary } from 'fdpass/cluster';

const primary = await ClusterPrimary.start({
  listen: { port: Number(process.env.PORT), host: '127.0.0.1' },
  channel: process.env.FDPASS_CLUSTER,
});
primary.on('listening', (worker) => console.log(`worker ${worker.pid} serves`));
primary.on('workerExit', (e) => console.log(`worker ${e.pid} gone, ${e.redispatched} connections given to others`));
process.on('SIGINT', () => primary.close().then(() => process.exit(0)));
