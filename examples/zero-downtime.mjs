// Zero-downtime restart: generation 1 serves HTTP; generation 2 starts, takes
// the very same listening socket through fdpass/handoff, says it is ready,
// and generation 1 drains and exits. The port never closes.
// Run: node examples/zero-downtime.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Handoff } from 'fdpass/handoff';

if (process.argv[2] === 'serve') {
  const [, , , control, generation] = process.argv;
  const server = createServer((req, res) => res.end(`generation ${generation}\n`));
  const handoff = await Handoff.start({ path: control });
  const inherited = await handoff.listen(server, 'http', { port: 0, host: '127.0.0.1' });
  await handoff.ready(); // the predecessor, if any, drains and exits now
  process.send({ port: server.address().port, inherited });
  process.on('SIGTERM', () => handoff.drain());
} else {
  const dir = mkdtempSync(join(tmpdir(), 'fdpass-handoff-'));
  const control = join(dir, 'handoff.sock');
  const start = (generation) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve', control, String(generation)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = new Promise((resolve) => child.once('message', resolve));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    return { child, ready, exited };
  };
  const get = (port) =>
    new Promise((resolve, reject) => {
      request({ port, host: '127.0.0.1', agent: false }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(text.trim()));
      })
        .on('error', reject)
        .end();
    });

  const g1 = start(1);
  const { port } = await g1.ready;
  console.log(`${await get(port)} listening`);
  const g2 = start(2);
  const second = await g2.ready;
  console.log(`generation 2 inherited the socket: ${second.inherited}, same port: ${second.port === port}`);
  console.log(`generation 1 exited with ${await g1.exited}`);
  console.log(`${await get(port)} answers on the same port`);
  g2.child.kill('SIGTERM');
  await g2.exited;
  rmSync(dir, { recursive: true, force: true });
}
