// The misuse matrix over the protocol modules and helpers: wrong types and
// out-of-range values are a TypeError or RangeError with a code (thrown, or
// rejected by an async function), before anything is sent; the process stays
// up and no fd is lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FdSocket, readStreamFromFd, serverFromFd, socketFromFd, writeStreamFromFd } from 'fdpass';
import { listenConsoleSocket, listenPidfdSocket, listenSeccompAgent, sendConsole, sendContainerProcessState, sendPidfd } from 'fdpass/runc';
import net from 'node:net';
import { listenFds, listenStored, notify, notifyBarrier, removeStoredFds, storeFds } from 'fdpass/systemd';
import { Handoff } from 'fdpass/handoff';
import { FdStream } from 'fdpass/stream';
import { USocket } from 'fdpass/usocket';
import { noLeak, tempDir } from '../helpers.js';

async function argumentError(what: string, fn: () => unknown): Promise<void> {
  let error: unknown;
  try {
    const r = fn();
    if (r instanceof Promise) await r;
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof TypeError || error instanceof RangeError, `${what}: expected a TypeError or RangeError, got ${String(error)}`);
  assert.equal(typeof (error as { code?: unknown }).code, 'string', `${what}: the error has a code`);
}

test('every public function refuses bad arguments with a coded TypeError/RangeError', () =>
  noLeak(async () => {
    const t = tempDir();
    const sock = t.path('m.sock');
    const bad: [string, () => unknown][] = [
      ['listenConsoleSocket(42)', () => listenConsoleSocket(42 as never)],
      ['listenConsoleSocket(too long)', () => listenConsoleSocket('/tmp/' + 'x'.repeat(200))],
      ['listenConsoleSocket(mode -1)', () => listenConsoleSocket(sock, { mode: -1 })],
      ['listenSeccompAgent(null)', () => listenSeccompAgent(null as never)],
      ['listenSeccompAgent(maxStateBytes "x")', () => listenSeccompAgent(sock, { maxStateBytes: 'x' as never })],
      ['listenPidfdSocket(NUL)', () => listenPidfdSocket('a\0b')],
      ['sendConsole(name 1)', () => sendConsole(sock, 1 as never, 0)],
      ['sendConsole(fd -1)', () => sendConsole(sock, 'x', -1)],
      ['sendConsole(target 1.5)', () => sendConsole(1.5 as never, 'x', 0)],
      ['sendPidfd(kind "other")', () => sendPidfd(sock, 'other' as never, 0)],
      ['sendPidfd(fd NaN)', () => sendPidfd(sock, 'standard', NaN)],
      ['sendContainerProcessState(state 1)', () => sendContainerProcessState(sock, 1 as never, [])],
      ['notify(42)', () => notify(42 as never)],
      ['notify(fds 254)', () => notify('READY=1', Array(254).fill(0))],
      ['storeFds(name 1)', () => storeFds(1 as never, [0])],
      ['storeFds(fds "x")', () => storeFds('n', 'x' as never)],
      ['removeStoredFds(name null)', () => removeStoredFds(null as never)],
      ['notifyBarrier(timeout -1)', () => notifyBarrier({ timeout: -1 })],
      ['listenFds(options 1)', () => listenFds(1 as never)],
      ['listenStored(null)', () => listenStored(null as never, 'http', 0)],
      ['listenStored(name "a:b")', () => listenStored(new net.Server(), 'a:b', 0)],
      ['listenStored(no fallback, nothing passed)', () => listenStored(new net.Server(), 'http')],
      ['listenStored(drainTimeout -1)', () => listenStored(new net.Server(), 'http', 0, { drainTimeout: -1 })],
      ['listenStored([])', () => listenStored([])],
      ['Handoff.start(null)', () => Handoff.start(null as never)],
      ['Handoff.start(path 1)', () => Handoff.start({ path: 1 as never })],
      ['Handoff.start(timeout -5)', () => Handoff.start({ path: sock, timeout: -5 })],
      ['FdStream.connect(42)', () => FdStream.connect(42 as never)],
      ['FdStream.fromFd(-1)', () => FdStream.fromFd(-1)],
      ['new USocket(42)', () => new USocket(42 as never)],
      ['socketFromFd("3")', () => socketFromFd('3' as never)],
      ['serverFromFd(2**31)', () => serverFromFd(2 ** 31)],
      ['readStreamFromFd(1.5)', () => readStreamFromFd(1.5)],
      ['writeStreamFromFd(-2)', () => writeStreamFromFd(-2)],
    ];
    for (const [what, fn] of bad) await argumentError(what, fn);
    // Nothing was left listening or connected: the socket is usable and free.
    const [a, b] = FdSocket.pair();
    await a.send('still fine');
    assert.equal((await b.recv())!.data.toString(), 'still fine');
    await Promise.all([a.close(), b.close()]);
    t.cleanup();
  }));
