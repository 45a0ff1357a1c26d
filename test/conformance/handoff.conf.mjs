// fdpass/handoff between two processes of this runtime: generation 2 takes
// generation 1's listening socket, generation 1 drains and exits 0, and the
// port answers throughout. Not on Deno (its net.Server exposes no fd); on
// Bun with node:net servers (its node:http server exposes no fd).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { runtimeArgv, tempDir, test } from './harness.mjs';

const serve = `
import { createServer } from 'node:net';
import { Handoff } from 'fdpass/handoff';
const [control, generation] = process.argv.slice(-2);
// A node:net server: Bun's node:http server has no fd to hand over.
const server = createServer((socket) => socket.end('generation ' + generation));
const handoff = await Handoff.start({ path: control });
const inherited = await handoff.listen(server, 'http', { port: 0, host: '127.0.0.1' });
await handoff.ready();
console.log(JSON.stringify({ port: server.address().port, inherited }));
process.on('SIGTERM', () => handoff.drain());
`;

const get = (port) =>
  new Promise((resolve, reject) => {
    let text = '';
    connect({ port, host: '127.0.0.1' })
      .on('data', (d) => (text += d))
      .on('end', () => resolve(text))
      .on('error', reject);
  });

test(
  'handoff: generation 2 takes the listener, generation 1 drains and exits 0, the port keeps answering',
  async () => {
    const t = tempDir();
    const file = join(new URL('.', import.meta.url).pathname, `.child-${process.pid}-serve.mjs`);
    writeFileSync(file, serve);
    const children = [];
    const start = (generation) => {
      const [cmd, ...args] = runtimeArgv(file);
      const child = spawn(cmd, [...args, t.path('handoff.sock'), String(generation)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      let out = '';
      const ready = new Promise((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
        });
        child.once('exit', (code) => reject(new Error(`generation ${generation} exited ${code} before it was ready`)));
      });
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
      return { child, ready, exited };
    };
    try {
      const g1 = start(1);
      const first = await g1.ready;
      assert.equal(first.inherited, false);
      assert.equal(await get(first.port), 'generation 1');
      const g2 = start(2);
      const second = await g2.ready;
      assert.deepEqual(second, { port: first.port, inherited: true });
      assert.equal(await g1.exited, 0);
      assert.equal(await get(first.port), 'generation 2');
      g2.child.kill('SIGTERM');
      assert.equal(await g2.exited, 0);
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      rmSync(file, { force: true });
      t.cleanup();
    }
  },
  { only: ['node', 'bun'], why: "Deno's net.Server exposes no fd to hand over" },
);
