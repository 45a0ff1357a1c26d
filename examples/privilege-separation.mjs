// Privilege separation: a root process opens what only root may open (a
// root-only file and a listening port) and hands the fds to an unprivileged
// worker, which then serves and reads with no privilege of its own.
// Run as root: node examples/privilege-separation.mjs
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdServer, FdSocket, serverFromFd } from 'fdpass';

const NOBODY = 65534;

if (process.argv[2] === 'worker') {
  // The worker: uid 65534, cannot open the secret itself.
  const sock = await FdSocket.connect(process.argv[3]);
  const { data, fds } = await sock.recv();
  const [secretFd, listenerFd] = fds;
  const { readFileSync } = await import('node:fs');
  let direct = 'readable';
  try {
    readFileSync(data.toString());
  } catch (err) {
    direct = err.code; // EACCES
  }
  const secret = readFileSync(secretFd, 'utf8').trim();
  closeSync(secretFd);
  const server = await serverFromFd(listenerFd, createServer((req, res) => res.end(`uid ${process.getuid()} read "${secret}" (direct open: ${direct})\n`)));
  await sock.send('serving');
  await sock.recv(); // end of file: the parent is done with us
  server.close();
  await sock.close();
} else {
  if (process.getuid() !== 0) {
    console.error('privilege-separation: run this example as root (it hands fds to a worker running as uid 65534)');
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), 'fdpass-privsep-'));
  chmodSync(dir, 0o711);
  const secretPath = join(dir, 'secret.txt');
  writeFileSync(secretPath, 'only root may open this', { mode: 0o600 });
  const secretFd = openSync(secretPath, 'r');
  // A listening TCP socket opened with root's rights (port 80 would need them).
  const listener = createServer();
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address();

  // Only the worker's uid may connect: the file mode lets it try, allow() decides.
  const control = await FdServer.listen({ path: join(dir, 'control.sock'), mode: 0o666, allow: (peer) => peer.uid === NOBODY });
  const worker = spawn(process.execPath, [fileURLToPath(import.meta.url), 'worker', control.path], {
    stdio: 'inherit',
    uid: NOBODY,
    gid: NOBODY,
  });
  const conn = await control.accept();
  await conn.send(secretPath, [secretFd, listener]);
  // Our copies are no longer needed: the worker holds its own.
  closeSync(secretFd);
  listener.close();
  await conn.recv(); // 'serving'
  const body = await new Promise((resolve, reject) => {
    request({ port, host: '127.0.0.1' }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
  process.stdout.write(body);
  await conn.close();
  await new Promise((resolve) => worker.on('close', resolve));
  await control.close();
  rmSync(dir, { recursive: true, force: true });
}
