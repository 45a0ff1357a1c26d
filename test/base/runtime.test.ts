// The readiness backend: chosen per runtime (src/base/runtime.ts), forced with
// FDPASS_BACKEND, and the thread backend's keep-alive equal to libuv's. CI
// also runs the whole suite with FDPASS_BACKEND=thread.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers.js';

/** Run an ES module (inside the package, so 'fdpass' resolves here) with this Node. */
function runModule(
  code: string,
  env: Record<string, string | undefined>,
): ReturnType<typeof spawnSync> & { stdout: string; stderr: string } {
  const file = join(repoRoot, 'build-test', `runtime-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, code);
  try {
    return spawnSync(process.execPath, [file], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  } finally {
    rmSync(file, { force: true });
  }
}

const threadNames = `
import { readdirSync, readFileSync } from 'node:fs';
const names = () => readdirSync('/proc/self/task').map((t) => readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim());
const { FdSocket } = await import('fdpass');
const [a, b] = FdSocket.pair();
await a.send('x');
const m = await b.recv();
await a.close();
await b.close();
console.log(m.data.toString(), names().filter((n) => n === 'fdpass-watch').length);
`;

type Backend = typeof import('../../dist/io/backend.js');
type RuntimeModule = typeof import('../../dist/base/runtime.js');
const dist = (m: string): string => new URL(`file://${repoRoot}/dist/${m}`).href;
const { backendName } = (await import(dist('io/backend.js'))) as Backend;
const { checkRuntime } = (await import(dist('base/runtime.js'))) as RuntimeModule;

const node = { name: 'node', version: '20.19.0' } as const;
const bun = { name: 'bun', version: '1.4.5' } as const;
const deno = { name: 'deno', version: '2.9.6' } as const;
const coded = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

describe('runtime and backend choice', () => {
  it('Node gets the libuv backend; Bun and Deno the thread backend; FDPASS_BACKEND forces either on Node', () => {
    assert.equal(backendName(node, undefined), 'uv');
    assert.equal(backendName(node, ''), 'uv');
    assert.equal(backendName(bun, undefined), 'thread');
    assert.equal(backendName(deno, undefined), 'thread');
    assert.equal(backendName(node, 'thread'), 'thread');
    assert.equal(backendName(node, 'uv'), 'uv');
    assert.equal(backendName(bun, 'thread'), 'thread');
  });

  it('an unsupported runtime, or libuv forced where there is none, is ERR_FDPASS_UNSUPPORTED_RUNTIME; a bad FDPASS_BACKEND is ERR_FDPASS_BAD_ENV', () => {
    assert.doesNotThrow(() => checkRuntime(node, 'linux', '9'));
    assert.doesNotThrow(() => checkRuntime(bun, 'linux', '9'));
    assert.doesNotThrow(() => checkRuntime(deno, 'linux', undefined));
    assert.throws(() => checkRuntime({ name: 'bun', version: '1.1.30' }, 'linux', '9'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => checkRuntime({ name: 'deno', version: '2.1.0' }, 'linux', '9'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => checkRuntime({ name: 'deno', version: '1.46.3' }, 'linux', '9'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => checkRuntime(node, 'darwin', '9'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => checkRuntime(node, 'linux', '7'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => backendName(bun, 'uv'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => backendName(deno, 'uv'), coded('ERR_FDPASS_UNSUPPORTED_RUNTIME'));
    assert.throws(() => backendName(node, 'epoll'), coded('ERR_FDPASS_BAD_ENV'));
  });

  it('at import: a bad FDPASS_BACKEND is a coded error, never a crash', () => {
    const r = runModule(`try { await import('fdpass'); console.log('loaded'); } catch (e) { console.log(e.code); }`, {
      FDPASS_BACKEND: 'kqueue',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'ERR_FDPASS_BAD_ENV\n');
  });

  it('FDPASS_BACKEND=thread runs one watcher thread; the libuv backend runs none', () => {
    const thread = runModule(threadNames, { FDPASS_BACKEND: 'thread' });
    assert.equal(thread.status, 0, thread.stderr);
    assert.equal(thread.stdout, 'x 1\n');
    const uv = runModule(threadNames, { FDPASS_BACKEND: 'uv' });
    assert.equal(uv.status, 0, uv.stderr);
    assert.equal(uv.stdout, 'x 0\n');
  });

  for (const backend of ['uv', 'thread']) {
    it(`${backend} backend: an idle socket does not hold the process open, a pending receive does, until it is answered`, async () => {
      // Idle: a pair with a message read ahead and nobody asking exits at once.
      const idle = runModule(
        `import { FdSocket } from 'fdpass';
         const [a, b] = FdSocket.pair();
         globalThis.keep = [a, b];
         await a.send('read ahead');
         console.log('idle');`,
        { FDPASS_BACKEND: backend },
      );
      assert.equal(idle.status, 0, idle.stderr);
      assert.equal(idle.stdout, 'idle\n');
      // Pending: the child waits in recv() with no timer and no other handle;
      // we answer only after it said that its loop ran with nothing left but
      // the receive (a setImmediate after recv()). Had the receive not held the
      // process, it would have ended (exit 13, unsettled top-level await)
      // without printing the answer.
      const t = tempDir();
      const file = join(repoRoot, 'build-test', `pending-${process.pid}-${backend}.mjs`);
      writeFileSync(
        file,
        `import { FdServer } from 'fdpass';
         const server = await FdServer.listen(${JSON.stringify(t.path('s'))});
         console.log('listening');
         const conn = await server.accept();
         const received = conn.recv();
         setImmediate(() => console.log('waiting'));
         const m = await received;
         console.log('got', m.data.toString());
         await conn.close();
         await server.close();`,
      );
      try {
        const child = spawn(process.execPath, [file], {
          env: { ...process.env, FDPASS_BACKEND: backend },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        const { FdSocket } = await import('fdpass');
        let out = '';
        const closed = new Promise((resolve) => child.on('close', resolve));
        // What the child printed so far holds `text` (or the child is gone: the assertions below say so).
        const said = (text: string): Promise<unknown> =>
          Promise.race([
            closed,
            new Promise<void>((resolve) => {
              const check = (): void => {
                if (out.includes(text)) resolve();
              };
              child.stdout.on('data', check);
              check();
            }),
          ]);
        child.stdout.on('data', (d: Buffer) => (out += d));
        await said('listening\n');
        const client = await FdSocket.connect(t.path('s'));
        await said('waiting\n');
        await client.send('answer');
        const code = await closed;
        await client.close();
        assert.equal(out, 'listening\nwaiting\ngot answer\n');
        assert.equal(code, 0);
      } finally {
        rmSync(file, { force: true });
        t.cleanup();
      }
    });
  }

  it('the watcher thread is joined and its fds closed when a worker ends', () => {
    const worker = join(repoRoot, 'build-test', `runtime-worker-${process.pid}.mjs`);
    writeFileSync(
      worker,
      `import { parentPort } from 'node:worker_threads';
       import { FdSocket } from 'fdpass';
       const [a, b] = FdSocket.pair();
       await a.send('x', [0]); // an fd in flight, read by nobody
       const [c, d] = FdSocket.pair();
       globalThis.keep = [a, b, c, d.recv()]; // a pending receive keeps the worker alive
       parentPort.postMessage('up');`,
    );
    try {
      const r = runModule(
        `import { Worker } from 'node:worker_threads';
         import { readdirSync, readFileSync } from 'node:fs';
         const threads = () => readdirSync('/proc/self/task').filter((t) => readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'fdpass-watch').length;
         const fds = () => readdirSync('/proc/self/fd').length;
         await import('fdpass');
         console.log('start'); // Node opens an fd of its own at the first write to a pipe
         const t0 = threads(), f0 = fds();
         for (let i = 0; i < 3; i++) {
           const w = new Worker(${JSON.stringify(worker)});
           await new Promise((res) => w.once('message', res));
           console.log('worker threads', threads() - t0);
           await w.terminate();
         }
         console.log('after', threads() - t0, fds() - f0);`,
        { FDPASS_BACKEND: 'thread' },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(
        r.stdout,
        'start\n' + 'worker threads 1\n'.repeat(3) + 'after 0 0\n',
        'each worker ran its own watcher thread, and left no thread and no fd',
      );
    } finally {
      rmSync(worker, { force: true });
    }
  });
});
