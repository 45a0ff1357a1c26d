// The read pump (src/io/pump.ts): EAGAIN, the budget, re-arming, hang-up
// mode, POLLERR, and a failed re-arm as an error on the reader, with the
// backend of this run (FDPASS_BACKEND). Internal modules come from dist/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { ioTurns, noLeak, repoRoot } from '../helpers.js';

type PumpModule = typeof import('../../dist/io/pump.js');
type Backend = typeof import('../../dist/io/backend.js');
type Native = typeof import('../../dist/base/native.js');
type Readiness = import('../../dist/io/readiness.js').ReadinessBackend;
type Reader = import('../../dist/io/pump.js').PumpReader;
const dist = (m: string): string => new URL(`file://${repoRoot}/dist/${m}`).href;
const { Pump, MORE, DRAINED, ENDED, BUDGET } = (await import(dist('io/pump.js'))) as PumpModule;
type PumpT = InstanceType<typeof Pump>;
const { readinessBackend } = (await import(dist('io/backend.js'))) as Backend;
const { native } = (await import(dist('base/native.js'))) as Native;
const { EBADF, EAGAIN } = constants.errno;

function pair(): [number, number] {
  const out = new Int32Array(2);
  assert.equal(native.socketpair(native.SOCK_STREAM, out), 0);
  return [out[0]!, out[1]!];
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Turns of the loop until `done()` holds; after 60 s (half a test's limit) the test fails naming `what`. */
async function turnsUntil(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not within 60 s: ${what}`);
    await turn();
  }
}

/** This environment's backend, with setInterest failing (-EBADF) while `fail.on`. */
function failingBackend(fail: { on: boolean }): Readiness {
  const real = readinessBackend();
  return {
    name: real.name,
    armCall: real.armCall,
    watch: (fd, onReady) => {
      const r = real.watch(fd, onReady);
      return {
        setInterest: (events) => (fail.on && events !== 0 ? -EBADF : r.setInterest(events)),
        close: (closeFd) => r.close(closeFd),
      };
    },
  };
}

/** A reader whose step reads one byte per call (recvmsg via readBytes is not needed: a plain read). */
function byteReader(fd: () => number, log: string[], over: Partial<Reader> = {}): Reader {
  const buf = Buffer.alloc(1);
  return {
    demand: () => true,
    step: () => {
      const n = native.readBytes(fd(), buf, 0, 1);
      log.push(n < 0 ? `err ${n}` : n === 0 ? 'eof' : `byte ${buf.toString()}`);
      return n < 0 ? n : n === 0 ? ENDED : MORE;
    },
    readFailed: (errno) => log.push(`failed ${errno}`),
    failed: (err) => log.push(`error ${(err as NodeJS.ErrnoException).code}`),
    ...over,
  };
}

test(`pump (${readinessBackend().name} backend): steps until EAGAIN, then waits for POLLIN; ENDED stops reading`, () =>
  noLeak(async () => {
    const [a, b] = pair();
    const log: string[] = [];
    const pump: PumpT = new Pump(
      a,
      byteReader(() => pump.fd, log),
    );
    assert.equal(native.writeBytes(b, Buffer.from('xy'), 0, 2), 2);
    pump.pump();
    assert.deepEqual(log, ['byte x', 'byte y', `err ${-EAGAIN}`]);
    // Found empty: asking again does not read until the fd is ready.
    pump.pump();
    assert.equal(log.length, 3, 'no read while drained');
    assert.equal(native.writeBytes(b, Buffer.from('z'), 0, 1), 1);
    await turnsUntil(() => log.length >= 5, 'five entries in the log');
    assert.deepEqual(log.slice(3), ['byte z', `err ${-EAGAIN}`]);
    native.close(b);
    await turnsUntil(() => pump.ended, 'the pump read to the end');
    assert.equal(log.at(-1), 'eof');
    pump.close();
  }));

test(`pump: at most BUDGET (${BUDGET}) steps per wake-up, the rest on later turns`, () =>
  noLeak(async () => {
    const [a, b] = pair();
    const log: string[] = [];
    const pump: PumpT = new Pump(
      a,
      byteReader(() => pump.fd, log),
    );
    const n = BUDGET * 2 + 1;
    assert.equal(native.writeBytes(b, Buffer.alloc(n, 'q'), 0, n), n);
    pump.pump();
    assert.equal(log.length, BUDGET, 'one wake-up reads BUDGET steps');
    await turnsUntil(() => log.includes(`err ${-EAGAIN}`), 'a read that found nothing (EAGAIN)');
    assert.equal(log.filter((l) => l === 'byte q').length, n, 'readiness brought the pump back for the rest');
    pump.close();
    native.close(b);
  }));

test('pump: no demand, no read and no POLLIN; demand again reads', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const log: string[] = [];
    let wanted = false;
    const pump: PumpT = new Pump(
      a,
      byteReader(() => pump.fd, log, { demand: () => wanted }),
    );
    assert.equal(native.writeBytes(b, Buffer.from('x'), 0, 1), 1);
    pump.pump();
    for (let i = 0; i < 3; i++) await turn();
    assert.deepEqual(log, []);
    wanted = true;
    pump.pump();
    assert.deepEqual(log, ['byte x', `err ${-EAGAIN}`]);
    pump.close();
    native.close(b);
  }));

test('pump: a failed re-arm is an error on the reader, named after the backend', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const log: string[] = [];
    const fail = { on: true };
    const errors: NodeJS.ErrnoException[] = [];
    const pump: PumpT = new Pump(
      a,
      byteReader(() => pump.fd, log, { failed: (err) => errors.push(err as NodeJS.ErrnoException) }),
      {
        backend: failingBackend(fail),
      },
    );
    pump.pump(); // finds nothing, then arms POLLIN: the backend fails
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'EBADF');
    assert.equal(errors[0]!.syscall, readinessBackend().armCall);
    // Nothing is armed: data arriving reaches nobody, until a re-arm works.
    assert.equal(native.writeBytes(b, Buffer.from('x'), 0, 1), 1);
    for (let i = 0; i < 3; i++) await turn();
    assert.deepEqual(log, [`err ${-EAGAIN}`]);
    fail.on = false;
    pump.update();
    await turnsUntil(() => log.length >= 3, 'three entries in the log');
    assert.deepEqual(log.slice(1), ['byte x', `err ${-EAGAIN}`]);
    pump.close();
    native.close(b);
  }));

test('pump: a POLLERR that no read explains is an error on the reader', () =>
  noLeak(async () => {
    // A reader whose step finds nothing, on an fd with an error pending
    // (its peer closed with a byte unread: ECONNRESET): the step here does
    // not read, so the error stays unexplained.
    const [a, b] = pair();
    assert.equal(native.writeBytes(a, Buffer.from('x'), 0, 1), 1);
    native.close(b);
    const errors: Error[] = [];
    let steps = 0;
    const pump: PumpT = new Pump(a, {
      demand: () => true,
      step: () => (steps++ === 0 ? -EAGAIN : DRAINED),
      readFailed: () => assert.fail('no read failed'),
      failed: (err) => errors.push(err),
    });
    pump.pump();
    await turnsUntil(() => errors.length > 0, 'an error reported');
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'ERR_FDPASS_INTERNAL');
    assert.match(errors[0]!.message, /POLLERR/);
    pump.close();
  }));

test('pump, hang-up mode: data waits for readNow(); the peer going away reads to the end', () =>
  noLeak(async () => {
    const [a, b] = pair();
    const log: string[] = [];
    const pump: PumpT = new Pump(
      a,
      byteReader(() => pump.fd, log, { demand: () => false }),
      { hangup: true },
    );
    pump.update();
    assert.equal(native.writeBytes(b, Buffer.from('x'), 0, 1), 1);
    await ioTurns(); // the backend polled (twice) with the byte there
    assert.deepEqual(log, [], 'no wake-up for data');
    pump.readNow();
    assert.deepEqual(log, ['byte x', `err ${-EAGAIN}`]);
    assert.equal(native.writeBytes(b, Buffer.from('y'), 0, 1), 1);
    native.close(b);
    await turnsUntil(() => pump.ended, 'the pump read to the end');
    assert.deepEqual(log.slice(2), ['byte y', 'eof']);
    pump.close();
  }));

test('FdSocket on the thread backend: a re-arm that the kernel refuses rejects the receive (epoll_ctl)', () => {
  // The socket's fd is closed behind its back and its number reused by
  // another socket: epoll forgot the old file, so re-arming fails with ENOENT.
  // (libuv re-arms in its own loop and aborts the process on such a failure:
  // the failing backend above stands in for it.)
  const script = `
    import { FdSocket } from ${JSON.stringify(dist('index.js'))};
    import { native } from ${JSON.stringify(dist('base/native.js'))};
    import { closeSync } from 'node:fs';
    const [a, b] = FdSocket.pair();
    const fd = a.fd;
    closeSync(fd);
    const out = new Int32Array(2);
    native.socketpair(native.SOCK_STREAM, out);
    if (out[0] !== fd) throw new Error('fd number not reused: ' + out[0] + ' ' + fd);
    try {
      await a.recv();
      console.log('resolved');
    } catch (err) {
      console.log(JSON.stringify({ code: err.code, syscall: err.syscall }));
    }
    a.release();
    closeSync(out[0]);
    closeSync(out[1]);
    await b.close();
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, FDPASS_BACKEND: 'thread' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { code: 'ENOENT', syscall: 'epoll_ctl' });
});
