// fdpass/shm on every runtime: external ArrayBuffers over mmap(2) and their
// detaching (Node-API) work here, in workers too; the mappings and fds are
// counted before and after (/proc/self/maps, /proc/self/fd).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { FdSocket } from 'fdpass';
import { SharedMemory } from 'fdpass/shm';
import { noLeak, runtime, test, which } from './harness.mjs';

/** Mappings of memfds called `name` in this process. */
const mappings = (name) =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(`/memfd:${name} (deleted)`)).length;

const codeOf = (fn) => {
  try {
    fn();
  } catch (err) {
    return err.code;
  }
  assert.fail('did not throw');
};

test('create, seal, send over a socket, map the received fd, close: the buffers detach', () =>
  noLeak(async () => {
    const shm = SharedMemory.create(1 << 16, { name: 'conf-a', seals: ['shrink', 'grow'] });
    new Uint8Array(shm.buffer).set([1, 2, 3], 65533);
    const [a, b] = FdSocket.pair();
    await a.sendFd('shm', shm.fd);
    const { fd } = await b.recvFd();
    const got = SharedMemory.fromFd(fd, { writable: true });
    assert.deepEqual(got.seals, ['shrink', 'grow']);
    assert.deepEqual([...new Uint8Array(got.buffer, 65533)], [1, 2, 3]);
    new Uint8Array(got.buffer)[0] = 9;
    assert.equal(new Uint8Array(shm.buffer)[0], 9, 'shared');
    assert.equal(mappings('conf-a'), 2);
    const view = new Uint8Array(got.buffer);
    got.close();
    assert.equal(view.length, 0, 'detached');
    assert.equal(got.buffer.byteLength, 0);
    shm.close();
    assert.equal(mappings('conf-a'), 0);
    await a.close();
    await b.close();
  }));

test('refusals leave the fd with the caller: unsealed, a socket; allowUnsealed maps', () =>
  noLeak(async () => {
    const shm = SharedMemory.create(4096, { name: 'conf-b' });
    const fd = openSync(`/proc/self/fd/${shm.fd}`, 'r');
    assert.equal(
      codeOf(() => SharedMemory.fromFd(fd)),
      'ERR_FDPASS_UNSEALED',
    );
    const [a, b] = FdSocket.pair();
    assert.equal(
      codeOf(() => SharedMemory.fromFd(a.fd, { allowUnsealed: true })),
      'ERR_FDPASS_BAD_FD',
    );
    const ro = SharedMemory.fromFd(fd, { allowUnsealed: true });
    assert.equal(ro.size, 4096);
    ro.close();
    shm.close();
    await a.close();
    await b.close();
  }));

test('remap: the next received file in the same buffer; the old fd closed, the new one owned', () =>
  noLeak(async () => {
    const files = [1, 2].map((n) => {
      const f = SharedMemory.create(1 << 16, { name: 'conf-r', seals: ['shrink', 'grow'] });
      new Uint8Array(f.buffer).fill(n);
      return f;
    });
    const [a, b] = FdSocket.pair();
    for (const f of files) await a.sendFd('frame', f.fd);
    const first = (await b.recvFd()).fd;
    const next = (await b.recvFd()).fd;
    const got = SharedMemory.fromFd(first);
    const view = new Uint8Array(got.buffer);
    assert.equal(view[65535], 1);
    got.remap(next);
    assert.equal(got.buffer.byteLength, 1 << 16);
    assert.equal(view[65535], 2, 'the same view shows the next file');
    assert.equal(got.fd, next);
    assert.equal(mappings('conf-r'), 3);
    got.close();
    assert.equal(view.length, 0, 'detached');
    for (const f of files) f.close();
    assert.equal(mappings('conf-r'), 0);
    await a.close();
    await b.close();
  }));

test(
  'CPython maps the memfd we send and writes into it',
  () =>
    noLeak(async () => {
      const shm = SharedMemory.create(4096, { name: 'conf-py', seals: ['shrink'] });
      const [a, b] = FdSocket.pair();
      const py = spawn(
        'python3',
        [
          '-c',
          `import mmap, os, socket
s = socket.socket(fileno=3); s.setblocking(True)
_, fds, _, _ = socket.recv_fds(s, 16, 1)  # all of "shm": unread bytes at close reset us
m = mmap.mmap(fds[0], os.fstat(fds[0]).st_size)
m[0:6] = b"python"
s.sendall(b"w")`,
        ],
        { stdio: ['ignore', 'inherit', 'inherit', b.fd] },
      );
      // Bun hands the child its fds after spawn() returns: close ours once it has.
      await new Promise((r) => py.once('spawn', r));
      await b.close();
      await a.sendFd('shm', shm.fd);
      assert.ok(await a.recv());
      assert.equal(Buffer.from(shm.buffer, 0, 6).toString(), 'python');
      await new Promise((r) => (py.exitCode !== null ? r() : py.once('exit', r)));
      await a.close();
      shm.close();
    }),
  { needs: which('python3') ? undefined : 'python3 not found (apt-get install -y python3)' },
);

test(
  'a worker maps and is terminated holding its mappings: they and their fds end with it',
  async () => {
    const file = new URL(`./.shm-worker-${process.pid}.mjs`, import.meta.url);
    writeFileSync(
      file,
      `import { parentPort } from 'node:worker_threads';
       const { SharedMemory } = await import('fdpass/shm');
       globalThis.keep = [SharedMemory.create(1 << 20, { name: 'conf-worker' }), SharedMemory.create(4096, { name: 'conf-worker' })];
       new Uint8Array(globalThis.keep[0].buffer).fill(7);
       setInterval(() => {}, 1000); // alive until terminated
       parentPort.postMessage('holding');`,
    );
    try {
      await noLeak(async () => {
        const w = new Worker(file);
        await new Promise((res, rej) => w.once('message', res).once('error', rej));
        assert.equal(mappings('conf-worker'), 2);
        await w.terminate();
        assert.equal(mappings('conf-worker'), 0);
      });
    } finally {
      rmSync(file, { force: true });
    }
  },
  { only: ['node', 'bun'], why: 'a terminated Deno worker leaves fds behind, some without fdpass too (Deno 2.9)' },
);

if (runtime === 'deno') {
  test('Deno: a terminated worker unmaps what it held (its fds are not counted: Deno 2.9 leaves some behind)', async () => {
    const file = new URL(`./.shm-worker-${Date.now()}.mjs`, import.meta.url);
    writeFileSync(
      file,
      `import { parentPort } from 'node:worker_threads';
       const { SharedMemory } = await import('fdpass/shm');
       globalThis.keep = SharedMemory.create(1 << 20, { name: 'conf-deno-worker' });
       setInterval(() => {}, 1000); // alive until terminated
       parentPort.postMessage('holding');`,
    );
    try {
      const w = new Worker(file);
      await new Promise((res, rej) => w.once('message', res).once('error', rej));
      assert.equal(mappings('conf-deno-worker'), 1);
      await w.terminate();
      // Deno ends the worker's environment (its cleanup hooks) after
      // terminate() resolved, with no event: look every 10 ms, up to 10 s.
      for (let i = 0; i < 1000 && mappings('conf-deno-worker') > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(mappings('conf-deno-worker'), 0);
    } finally {
      rmSync(file, { force: true });
    }
  });
}
