// PM2's cluster mode with fdpass/cluster: PM2 starts and restarts the
// workers (cluster mode), an fdpass/cluster primary (a fork-mode app)
// accepts and hands connections to them. The workers find the primary by
// the channel name in FDPASS_CLUSTER.
// Run: pm2 start ecosystem.config.cjs --only primary && pm2 start ecosystem.config.cjs --only web
const port = process.env.PORT ?? '8080';
const channel = process.env.FDPASS_CLUSTER ?? 'fdpass-pm2-example';

module.exports = {
  apps: [
    { name: 'primary', script: 'primary.mjs', env: { PORT: port, FDPASS_CLUSTER: channel } },
    { name: 'web', script: 'worker.mjs', exec_mode: 'cluster', instances: 2, env: { FDPASS_CLUSTER: channel } },
  ],
};
