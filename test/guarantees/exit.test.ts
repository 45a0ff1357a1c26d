// Process exit with fds queued: a child (test/fixtures/exiting.ts) holds sends
// queued behind backpressure and a read-ahead batch of messages whose fds were
// never delivered, then ends: process.exit(), an uncaught exception, or the end
// of its main module. The fd passed around is the write end of a FIFO whose
// read end only the parent holds: the read end sees end of file only once no
// copy of the write end is left anywhere (in the child, in its buffers, in
// flight, in a grandchild it spawned).
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { FdServer, type FdSocket } from 'fdpass';
import { noLeak, repoRoot, tempDir } from '../helpers.js';
import { JsonLines, exited } from '../lines.js';

const fixture = join(repoRoot, 'build-test', 'test', 'fixtures', 'exiting.js');
const MESSAGES = 50;
const CHUNK = 64 * 1024;

/** 'eof' when nobody holds the write end any more, 'open' while someone does. */
function fifoState(readEnd: number): 'eof' | 'open' {
  try {
    const n = readSync(readEnd, Buffer.alloc(16));
    assert.equal(n, 0, 'nothing is ever written into the FIFO');
    return 'eof';
  } catch (e) {
    if ((e as { code?: string }).code === 'EAGAIN') return 'open';
    throw e;
  }
}

const sleepers: number[] = [];
afterEach(() => {
  for (const pid of sleepers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))),
  ]);
}

/** Read a socket to its end, closing every fd; the bytes and fds that came. */
async function drain(sock: FdSocket): Promise<{ bytes: number; fds: number }> {
  let bytes = 0;
  let fds = 0;
  for (;;) {
    const m = await sock.recv({ maxBytes: 1 << 20 });
    if (m === null) return { bytes, fds };
    bytes += m.data.length;
    fds += m.fds.length;
    for (const fd of m.fds) closeSync(fd);
  }
}

async function scenario(how: 'exit' | 'throw' | 'end'): Promise<void> {
  const t = tempDir();
  const fifo = t.path('fifo');
  execFileSync('mkfifo', [fifo]);
  const readEnd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeEnd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  const server = await FdServer.listen(t.path('s'));
  const child = spawn(process.execPath, [fixture, server.path as string, how], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = new JsonLines(child);
  let a: FdSocket | undefined;
  let b: FdSocket | undefined;
  try {
    a = await server.accept(); // the child sends here; we do not read yet
    b = await server.accept(); // we send the write end here
    for (let i = 0; i < MESSAGES; i++) await b.send(`w${i}`, [writeEnd]);
    closeSync(writeEnd); // from now on only copies in flight and in the child hold it
    child.stdin!.write('go\n');
    const ready = await lines.event('event', 'ready');
    sleepers.push(ready.sleeper as number);
    assert.equal(ready.pendingSends, 4, 'sends queued behind backpressure');
    const sends = ready.sends as number;

    if (how === 'end') {
      // The main module ended, but sends wait for room: like a net.Socket
      // write, they keep the process alive until the peer reads. No wait to
      // see it live on: 4 sends were queued in its memory (ready said so), so
      // a child that exited without them would deliver fewer bytes below.
      // Reads until the child, done sending, exits (a child kept alive by
      // anything else fails here, at the bound, rather than hang the file).
      const got = await within(drain(a), 20_000, 'the queued sends arrive');
      assert.deepEqual(got, { bytes: sends * CHUNK, fds: sends }, 'every queued send arrived whole, none dropped');
      assert.equal(await within(exited(child), 20_000, 'the child exits once its queued sends are read'), 0);
    } else {
      // It exits with its sends queued and nobody reading them: a child that
      // waited for them would wait for ever, so the bound is the failure.
      const code = await within(exited(child), 20_000, 'the child exits while its sends wait for a reader');
      if (how === 'exit') assert.equal(code, 0);
      else {
        assert.equal(code, 1);
        assert.match(lines.stderr, /fdpass-test-uncaught/);
      }
      // The child is gone, but what it sent before waits, unread, in our
      // socket's queue: those copies of the write end are alive.
      assert.equal(fifoState(readEnd), 'open', 'copies in flight still hold the write end');
      const got = await drain(a);
      // What reached the kernel arrives; the sends still queued in user space
      // die with the process (the first of them may have gone in part, with its fd).
      assert.ok(got.fds === sends - 4 || got.fds === sends - 3, `${got.fds} of ${sends} sends reached the kernel before the exit`);
    }
    // Nobody holds the write end now: not the child, its read-ahead, the
    // sends it had queued, nor the sleep it spawned.
    assert.equal(fifoState(readEnd), 'eof', 'no copy of the write end survives');
    assert.equal(await b.recv(), null);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited(child);
    await a?.close();
    await b?.close();
    await server.close();
    closeSync(readEnd);
    t.cleanup();
  }
}

describe('process exit with fds queued', () => {
  test('process.exit() with sends queued and fds read ahead: prompt exit, no fd survives', { timeout: 30_000 }, () =>
    noLeak(() => scenario('exit')),
  );
  test('an uncaught exception with sends queued and fds read ahead: prompt exit, no fd survives', { timeout: 30_000 }, () =>
    noLeak(() => scenario('throw')),
  );
  test('the main module ends with sends queued: the process lives until the peer reads them all, then exits', { timeout: 30_000 }, () =>
    noLeak(() => scenario('end')),
  );
});
