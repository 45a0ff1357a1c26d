// Acting on fds (issue 14) on every runtime: a Pidfd waits for a process it
// did not start through the runtime's readiness backend, peerPidfd names the
// peer of a socket, and a pty master takes a window size.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { FdSocket } from 'fdpass';
import { Pidfd } from 'fdpass/pidfd';
import { PtyStream } from 'fdpass/runc';
import { noLeak, test } from './harness.mjs';

test('Pidfd: signal a process and wait for its exit on the event loop', async () => {
  // The child is started outside the fd count, and the count is taken again
  // only once the runtime has seen the child close. (Deno's own socketpair,
  // opened after a first child, is opened before any count: settleRuntime.)
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const closed = new Promise((r) => child.once('close', r));
  await noLeak(async () => {
    const p = Pidfd.open(child.pid);
    assert.equal(p.pid, child.pid);
    const exited = p.exited();
    p.signal('SIGTERM');
    await exited;
    p.close();
    await closed;
  });
});

test('peerPidfd: the peer of a socketpair is this process', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const p = a.peerPidfd();
    assert.equal(p.pid, process.pid);
    p.close();
    await a.close();
    await b.close();
  }));

test('PtyStream.resize and getWindowSize on a pty master', () =>
  noLeak(async () => {
    const pty = new PtyStream(openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY));
    pty.resize(120, 40);
    assert.deepEqual(pty.getWindowSize(), { cols: 120, rows: 40 });
    pty.destroy();
    await new Promise((r) => pty.once('close', r));
  }));
