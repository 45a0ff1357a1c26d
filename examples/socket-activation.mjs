// systemd socket activation: the service manager binds the listening socket
// and starts us with it (LISTEN_FDS, LISTEN_FDNAMES); we serve on the
// inherited fd. Debian's systemd-socket-activate plays the service manager.
// Run: node examples/socket-activation.mjs
import { spawn } from 'node:child_process';
import { createServer, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { serverFromFd } from 'fdpass';
import { listenFds } from 'fdpass/systemd';

if (process.argv[2] === 'serve') {
  // What a socket-activated service does: take the fds, serve on them.
  for (const { fd, name } of listenFds()) {
    await serverFromFd(fd, createServer((req, res) => res.end(`served by pid ${process.pid} on "${name}"\n`)));
  }
  process.on('SIGTERM', () => process.exit(0));
} else {
  // Pick a free port, then let systemd-socket-activate bind it and start us.
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  const manager = spawn(
    'systemd-socket-activate',
    ['-l', `127.0.0.1:${port}`, '--fdname=web', process.execPath, fileURLToPath(import.meta.url), 'serve'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let body;
  for (let i = 0; i < 100 && body === undefined; i++) {
    body = await new Promise((resolve) => {
      request({ port, host: '127.0.0.1' }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(text));
      })
        .on('error', () => setTimeout(() => resolve(undefined), 50))
        .end();
    });
  }
  process.stdout.write(body.replace(/pid \d+/, 'pid N'));
  manager.kill('SIGTERM');
  await new Promise((resolve) => manager.on('close', resolve));
}
