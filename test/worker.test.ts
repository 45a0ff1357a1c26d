// Worker threads: the addon is context-aware, and a worker that ends closes
// its sockets and the fds of messages it never delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { FdServer } from 'fdpass';
import { fdTarget, openFds, tempDir, delay } from './helpers.js';

function fdsPointingAt(path: string): number[] {
  return openFds().filter((fd) => fdTarget(fd) === path);
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync, closeSync } = require('node:fs');
import('fdpass').then(async ({ FdSocket }) => {
  const sock = await FdSocket.connect(workerData.path);
  // Wait until all messages are in the kernel queue, so that one recv reads a batch.
  await new Promise((res) => parentPort.once('message', res));
  // Receive one message and use its fd; leave the rest undelivered.
  const m = await sock.recv();
  parentPort.postMessage({ first: readFileSync(m.fds[0], 'utf8') });
  m.fds.forEach((f) => closeSync(f));
  if (workerData.mode === 'exit') {
    // Ask for one more so that a batch is buffered, then end the worker.
    await sock.recv().then((x) => x && x.fds.forEach(closeSync));
    parentPort.postMessage({ second: true });
    process.exit(0);
  }
  parentPort.postMessage({ waiting: true });
  setInterval(() => {}, 1000); // stays until terminated
});
`;

for (const mode of ['terminate', 'exit'] as const) {
  test(`a worker ${mode === 'terminate' ? 'terminated' : 'exiting'} with fds buffered closes them and its socket`, async () => {
    const t = tempDir();
    const file = t.path('data.txt');
    writeFileSync(file, 'from main');
    const server = await FdServer.listen(t.path('w.sock'));
    const baseline = openFds().length;
    const worker = new Worker(WORKER, { eval: true, workerData: { path: t.path('w.sock'), mode } });
    const exited = new Promise((res) => worker.on('exit', res));
    const messages: Record<string, unknown>[] = [];
    worker.on('message', (m: Record<string, unknown>) => messages.push(m));
    const conn = await server.accept();
    const fd = openSync(file, 'r');
    for (let i = 0; i < 50; i++) await conn.send(`m${i}`, [fd, fd]);
    closeSync(fd);
    worker.postMessage('go');
    while (!messages.some((m) => m.waiting || m.second)) await delay(5);
    assert.equal(messages[0]!.first, 'from main');
    // The worker holds up to a batch of undelivered messages with their fds.
    if (mode === 'terminate') {
      assert.ok(fdsPointingAt(file).length > 0, 'the worker has fds buffered');
      await worker.terminate();
    } else {
      await exited;
    }
    for (let i = 0; i < 100 && fdsPointingAt(file).length > 0; i++) await delay(10);
    assert.deepEqual(fdsPointingAt(file), [], 'every fd the worker received is closed');
    // The worker's socket is closed too: our side sees end of file.
    let m;
    while ((m = await conn.recv()) !== null) m.fds.forEach((f) => closeSync(f));
    await conn.close();
    await server.close();
    for (let i = 0; i < 100 && openFds().length > baseline; i++) await delay(10);
    assert.ok(openFds().length <= baseline, 'no fd left behind');
    t.cleanup();
  });
}

test('workers pass fds among themselves and to the main thread', async () => {
  const t = tempDir();
  writeFileSync(t.path('w.txt'), 'worker file');
  const server = await FdServer.listen(t.path('w2.sock'));
  const code = `
const { workerData } = require('node:worker_threads');
const { openSync, closeSync } = require('node:fs');
import('fdpass').then(async ({ FdSocket }) => {
  const s = await FdSocket.connect(workerData.path);
  const fd = openSync(workerData.file, 'r');
  for (let i = 0; i < 100; i++) await s.sendFd('w' + i, fd);
  closeSync(fd);
  await s.close();
});`;
  const workers = [1, 2].map(() => new Worker(code, { eval: true, workerData: { path: t.path('w2.sock'), file: t.path('w.txt') } }));
  const exited = workers.map((w) => new Promise((res) => w.on('exit', res)));
  let received = 0;
  for (let i = 0; i < 2; i++) {
    const conn = await server.accept();
    for (;;) {
      try {
        const { name, fd } = await conn.recvFd();
        assert.match(name, /^w\d+$/);
        // All fds of one worker share one file offset: read at position 0.
        const buf = Buffer.alloc(32);
        if (received % 50 === 0) assert.equal(buf.toString('utf8', 0, readSync(fd, buf, 0, 32, 0)), 'worker file');
        closeSync(fd);
        received++;
      } catch (e) {
        assert.equal((e as { code?: string }).code, 'ERR_FDPASS_EOF');
        break;
      }
    }
    await conn.close();
  }
  assert.equal(received, 200);
  await Promise.all(exited);
  await server.close();
  t.cleanup();
});
