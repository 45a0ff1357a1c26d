// Worker threads: the addon is context-aware, and a worker that ends closes
// its sockets, the fds of messages it never delivered, and the fds its
// protocol modules hold (FdStream, the runc listeners, a handoff's inherited
// listeners).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { FdServer, FdSocket } from 'fdpass';
import { Handoff } from 'fdpass/handoff';
import { sendConsole } from 'fdpass/runc';
import { fdTarget, openFds, tempDir, until } from '../helpers.js';

/** The first of `messages` (those the worker posted so far, and to come) for which `match` holds. */
function messageFrom(
  worker: Worker,
  messages: Record<string, unknown>[],
  match: (m: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  const seen = messages.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>): void => {
      if (!match(m)) return;
      worker.off('message', onMessage).off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number): void => reject(new Error(`the worker exited (${code}) first; it said ${JSON.stringify(messages)}`));
    worker.on('message', onMessage).once('exit', onExit);
  });
}

function fdsPointingAt(path: string): number[] {
  return openFds().filter((fd) => fdTarget(fd) === path);
}

/** A listening net.Server and what its fd points at ('socket:[inode]'). */
async function listening(how: net.ListenOptions, onConnection?: (s: net.Socket) => void): Promise<{ server: net.Server; target: string }> {
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(how, resolve));
  const target = fdTarget((server as unknown as { _handle: { fd: number } })._handle.fd);
  assert.ok(target?.startsWith('socket:'), `a socket: ${target}`);
  return { server, target: target! };
}

/** How many fds of this process point at each target. */
function copies(targets: string[]): number[] {
  const all = openFds().map(fdTarget);
  return targets.map((target) => all.filter((t) => t === target).length);
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
// closeFds, not fs.closeSync: Node warns when a worker closes with fs an fd it did not open with fs.
import('fdpass').then(async ({ FdSocket, closeFds }) => {
  const sock = await FdSocket.connect(workerData.path);
  // Wait until all messages are in the kernel queue, so that one recv reads a batch.
  await new Promise((res) => parentPort.once('message', res));
  // Receive one message and use its fd; leave the rest undelivered.
  const m = await sock.recv();
  parentPort.postMessage({ first: readFileSync(m.fds[0], 'utf8') });
  closeFds(m.fds);
  if (workerData.mode === 'exit') {
    // Ask for one more so that a batch is buffered, then end the worker.
    await sock.recv().then((x) => x && closeFds(x.fds));
    parentPort.postMessage({ second: true });
    // The main thread looks at the fds held (one table for all threads), then lets it end.
    await new Promise((res) => parentPort.once('message', res));
    process.exit(0);
  }
  globalThis.held = sock; // not collected (and closed by the GC) before the worker ends
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
    await messageFrom(worker, messages, (m) => Boolean(m.waiting || m.second));
    assert.equal(messages[0]!.first, 'from main');
    // The worker holds up to a batch of undelivered messages with their fds.
    assert.ok(fdsPointingAt(file).length > 0, 'the worker has fds buffered');
    if (mode === 'terminate') {
      await worker.terminate();
    } else {
      worker.postMessage('exit');
      await exited;
    }
    assert.deepEqual(fdsPointingAt(file), [], 'every fd the worker received is closed');
    // The worker's socket is closed too: our side sees end of file.
    let m;
    while ((m = await conn.recv()) !== null) m.fds.forEach((f) => closeSync(f));
    await conn.close();
    await server.close();
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

// Protocol modules in a worker that is terminated mid-transfer: whatever the
// module holds (an FdStream's fds of bytes not read yet, a runc listener's
// values nobody took, a seccomp state's fds still being read) is closed with
// the worker. The fds passed all point at one marker file, so counting the
// fds open on it, process-wide, shows any that survived the worker.
describe('protocol modules in a worker terminated mid-transfer', () => {
  // terminate() resolves on 'exit', which Node emits once it joined the
  // worker's thread, after that thread ran the environment's cleanup hooks:
  // what the worker held is closed by then, with no wait.
  function gone(marker: string, what: string): void {
    assert.deepEqual(fdsPointingAt(marker), [], `${what}: every fd the worker held is closed`);
  }

  test('an FdStream reading fds in a loop, then holding unread bytes with fds', async () => {
    const t = tempDir();
    const marker = t.path('marker');
    writeFileSync(marker, 'm');
    const server = await FdServer.listen(t.path('s'));
    const code = `
const { parentPort, workerData } = require('node:worker_threads');
Promise.all([import('fdpass'), import('fdpass/stream')]).then(([{ closeFds }, { FdStream }]) => {
  const s = FdStream.connect(workerData.path);
  let n = 0;
  const onReadable = () => {
    let m;
    while (n < 20 && (m = s.read(8, null)) !== null) {
      closeFds(m.fds);
      n++;
    }
    if (n === 20) {
      // Stop reading: what comes next stays in the stream (and the kernel).
      s.off('readable', onReadable);
      globalThis.held = s; // not collected (and closed by the GC) before the worker ends
      parentPort.postMessage({ read: n });
    }
  };
  s.on('readable', onReadable);
});`;
    const worker = new Worker(code, { eval: true, workerData: { path: t.path('s') } });
    const stopped = new Promise((res) => worker.once('message', res));
    const conn = await server.accept();
    const fd = openSync(marker, 'r');
    let sending = true;
    const sender = (async () => {
      for (let i = 0; sending && i < 2000; i++)
        await conn.send(`msg${String(i).padStart(5, '0')}`, [fd, fd]).catch(() => (sending = false));
    })();
    await stopped;
    // The worker holds fds of bytes it did not read, in its stream's buffer.
    await until(() => fdsPointingAt(marker).length > 1, 'the worker holds fds');
    assert.ok(fdsPointingAt(marker).length > 1, 'the worker holds fds');
    await worker.terminate();
    sending = false;
    await sender;
    closeSync(fd);
    await conn.close();
    await server.close();
    gone(marker, 'FdStream');
    t.cleanup();
  });

  test('a runc console listener receiving consoles in a loop, then leaving values untaken', async () => {
    const t = tempDir();
    const marker = t.path('marker');
    writeFileSync(marker, 'm');
    const code = `
const { parentPort, workerData } = require('node:worker_threads');
Promise.all([import('fdpass'), import('fdpass/runc')]).then(async ([{ closeFds }, { listenConsoleSocket }]) => {
  const listener = await listenConsoleSocket(workerData.path);
  parentPort.postMessage({ listening: true });
  let n = 0;
  for await (const c of listener) {
    closeFds([c.fd]);
    if (++n === 10) break; // the next values wait in the listener, nobody takes them
  }
  globalThis.held = listener; // not collected (and closed by the GC) before the worker ends
  parentPort.postMessage({ taken: n });
});`;
    const worker = new Worker(code, { eval: true, workerData: { path: t.path('console') } });
    const messages: Record<string, unknown>[] = [];
    worker.on('message', (m: Record<string, unknown>) => messages.push(m));
    await messageFrom(worker, messages, (m) => Boolean(m.listening));
    const fd = openSync(marker, 'r');
    for (let i = 0; i < 40; i++) await sendConsole(t.path('console'), '/dev/pts/ptmx', fd);
    closeSync(fd);
    await messageFrom(worker, messages, (m) => Boolean(m.taken));
    await until(() => fdsPointingAt(marker).length >= 30, 'the listener holds the 30 consoles nobody took');
    assert.equal(fdsPointingAt(marker).length, 30, 'the listener holds the 30 consoles nobody took');
    await worker.terminate();
    gone(marker, 'console listener');
    t.cleanup();
  });

  test('a handoff successor that received the listeners and has not used them yet', async () => {
    const t = tempDir();
    const tcp = await listening({ port: 0, host: '127.0.0.1' });
    const unix = await listening({ path: t.path('http.sock') });
    const targets = [tcp.target, unix.target];
    // The predecessor, in this thread: it offers both listeners, then waits for "ready".
    const predecessor = await Handoff.start({ path: t.path('control.sock'), exit: false });
    predecessor.add(tcp.server, 'tcp');
    predecessor.add(unix.server, 'unix');
    await predecessor.ready();
    assert.deepEqual(copies(targets), [1, 1]);
    const aborted = new Promise<string>((res) => predecessor.once('aborted', (_peer, reason) => res(reason)));
    const code = `
const { parentPort, workerData } = require('node:worker_threads');
import('fdpass/handoff').then(async ({ Handoff }) => {
  const handoff = await Handoff.start({ path: workerData.path, exit: false });
  // The listeners arrived; nobody took them (no listen(), take() or ready()).
  globalThis.held = handoff; // not collected (and closed by the GC) before the worker ends
  parentPort.postMessage({ inherited: handoff.inherited });
  setInterval(() => {}, 1000); // stays until terminated
});`;
    const worker = new Worker(code, { eval: true, workerData: { path: t.path('control.sock') } });
    const started = (await new Promise((res) => worker.once('message', res))) as { inherited: string[] };
    assert.deepEqual(started.inherited, ['tcp', 'unix']);
    assert.deepEqual(copies(targets), [2, 2], 'the worker holds a copy of each listener');
    await worker.terminate();
    assert.match(await aborted, /before it was ready/);
    assert.deepEqual(copies(targets), [1, 1], 'handoff: every listener fd the worker held is closed');
    assert.equal(predecessor.state, 'serving');
    await predecessor.close();
    await Promise.all([tcp.server, unix.server].map((s) => new Promise((r) => s.close(r))));
    t.cleanup();
  });

  test('a runc seccomp agent in the middle of a state: its fds arrived, its end of file not yet', async () => {
    const t = tempDir();
    const marker = t.path('marker');
    writeFileSync(marker, 'm');
    const code = `
const { parentPort, workerData } = require('node:worker_threads');
import('fdpass/runc').then(async ({ listenSeccompAgent }) => {
  const agent = await listenSeccompAgent(workerData.path);
  parentPort.postMessage({ listening: true });
  for await (const v of agent) parentPort.postMessage({ unexpected: v.state.state.id });
});`;
    const worker = new Worker(code, { eval: true, workerData: { path: t.path('agent') } });
    await new Promise((res) => worker.once('message', res));
    const sock = await FdSocket.connect(t.path('agent'));
    const fd = openSync(marker, 'r');
    const state = JSON.stringify({
      ociVersion: '1.0.2',
      fds: ['seccompFd', 'a', 'b'],
      pid: 1,
      state: { ociVersion: '1.0.2', id: 'mid', status: 'creating', bundle: '/b' },
    });
    await sock.send(state.slice(0, 40), [fd, fd, fd]);
    closeSync(fd);
    await until(() => fdsPointingAt(marker).length >= 3, 'the agent read the first bytes and their 3 fds');
    assert.equal(fdsPointingAt(marker).length, 3, 'the agent read the first bytes and their 3 fds');
    await worker.terminate();
    gone(marker, 'seccomp agent');
    await sock.close();
    t.cleanup();
  });
});

test("a handoff in a worker takes over: it serves on the inherited listener, and what it hands out is the user's", async () => {
  const t = tempDir();
  const marker = t.path('marker');
  writeFileSync(marker, 'm');
  const tcp = await listening({ port: 0, host: '127.0.0.1' }, (s) => s.end('main'));
  const extra = await listening({ port: 0, host: '127.0.0.1' });
  const port = (tcp.server.address() as net.AddressInfo).port;
  const predecessor = await Handoff.start({ path: t.path('control.sock'), exit: false });
  predecessor.add(tcp.server, 'tcp');
  predecessor.add(extra.server, 'extra');
  await predecessor.ready();
  const drained = new Promise((res) => predecessor.once('drained', res));
  const code = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
Promise.all([import('fdpass'), import('fdpass/handoff')]).then(async ([{ closeFds }, { Handoff }]) => {
  const handoff = await Handoff.start({ path: workerData.path, exit: false });
  const inherited = handoff.inherited;
  const server = net.createServer((s) => s.end('worker'));
  const listened = await handoff.listen(server, 'tcp');
  const extra = handoff.take('extra'); // the user's now: the user closes it (in a worker: closeFds)
  closeFds([extra]);
  parentPort.postMessage({ inherited, listened, extra, port: server.address().port });
  await new Promise((res) => parentPort.once('message', res));
  await handoff.ready();
  parentPort.postMessage({ ready: true });
  setInterval(() => {}, 1000); // serves until terminated
});`;
  const worker = new Worker(code, { eval: true, workerData: { path: t.path('control.sock') } });
  const m = (await new Promise((res) => worker.once('message', res))) as {
    inherited: string[];
    listened: boolean;
    extra: number;
    port: number;
  };
  assert.deepEqual(m.inherited, ['tcp', 'extra']);
  assert.equal(m.listened, true);
  assert.equal(m.port, port, 'the same listening socket');
  // The number of the fd the user took and closed is free: reuse it here. The
  // worker's end must not close it (take() handed it over for good).
  const opened: number[] = [];
  let reused = -1;
  for (let i = 0; i < 256 && reused < 0; i++) {
    const fd = openSync(marker, 'r');
    if (fd === m.extra) reused = fd;
    else opened.push(fd);
  }
  opened.forEach((fd) => closeSync(fd));
  assert.equal(reused, m.extra, `the number the worker closed (${m.extra}) was reused here: ${fdTarget(m.extra)}`);
  const ready = new Promise((res) => worker.once('message', res));
  worker.postMessage('ready');
  assert.deepEqual(await ready, { ready: true });
  assert.deepEqual(await drained, { forced: 0 });
  assert.equal(tcp.server.listening, false);
  assert.equal(extra.server.listening, false);
  // The worker serves on the listener it inherited.
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let d = '';
    c.on('data', (b) => (d += b.toString()));
    c.on('end', () => resolve(d));
    c.on('error', reject);
  });
  assert.equal(reply, 'worker');
  assert.deepEqual(copies([tcp.target, extra.target]), [1, 0]);
  await worker.terminate();
  assert.deepEqual(copies([tcp.target]), [0], "the worker's server closed with the worker");
  assert.equal(fdTarget(reused), marker, "the worker's end left the reused number alone");
  closeSync(reused);
  await predecessor.close();
  t.cleanup();
});
