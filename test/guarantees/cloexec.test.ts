// Received fds are close-on-exec in every module: a child process spawned
// while we hold them does not inherit them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { FdSocket, recvFdSync, sendFdSync } from 'fdpass';
import { listenConsoleSocket, listenPidfdSocket, listenSeccompAgent, sendConsole, sendContainerProcessState, sendPidfd } from 'fdpass/runc';
import { FdStream } from 'fdpass/stream';
import { noLeak, tempDir } from '../helpers.js';

/** The fds among `fds` that a freshly spawned child still has open. */
function inheritedByChild(fds: number[]): number[] {
  const script = fds.map((fd) => `test -e /proc/self/fd/${fd} && echo ${fd};`).join(' ');
  const out = spawnSync('sh', ['-c', `${script} true`])
    .stdout.toString()
    .trim();
  return out ? out.split('\n').map(Number) : [];
}

test('the control: an fd without close-on-exec is inherited (the check can fail)', () => {
  // stdin, stdout and stderr are not close-on-exec.
  assert.deepEqual(inheritedByChild([0, 1, 2]), [0, 1, 2]);
});

test('core: recv, recvFd, the iterator, events and recvFdSync give close-on-exec fds', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const file = openSync('/dev/null', 'r');
    const got: number[] = [];
    await a.send('1', [file, file]);
    got.push(...(await b.recv())!.fds);
    await a.sendFd('2', file);
    got.push((await b.recvFd()).fd);
    await a.send('3', [file]);
    for await (const m of b) {
      got.push(...m.fds);
      break;
    }
    await a.send('4', [file]);
    got.push(...(await new Promise<number[]>((res) => b.once('message', (m) => res(m.fds)))));
    sendFdSync(a, '5', file);
    got.push(recvFdSync(b).fd);
    assert.equal(got.length, 6);
    assert.deepEqual(inheritedByChild(got), []);
    got.forEach((fd) => closeSync(fd));
    closeSync(file);
    await Promise.all([a.close(), b.close()]);
  }));

test('fdpass/runc listeners and fdpass/stream give close-on-exec fds', () =>
  noLeak(async () => {
    const t = tempDir();
    const file = openSync('/dev/null', 'r');
    const got: number[] = [];

    const consoles = await listenConsoleSocket(t.path('console.sock'));
    await sendConsole(t.path('console.sock'), '/dev/pts/ptmx', file);
    for await (const { fd } of consoles) {
      got.push(fd);
      break;
    }
    await consoles.close();

    const agent = await listenSeccompAgent(t.path('agent.sock'));
    const state = {
      ociVersion: '1.0.2',
      fds: ['seccompFd'],
      pid: 1,
      state: { ociVersion: '1.0.2', id: 'c', status: 'creating' as const, pid: 1, bundle: '/b' },
    };
    await sendContainerProcessState(t.path('agent.sock'), state, [file]);
    for await (const { fds } of agent) {
      got.push(...Object.values(fds));
      break;
    }
    await agent.close();

    const pidfds = await listenPidfdSocket(t.path('pidfd.sock'));
    await sendPidfd(t.path('pidfd.sock'), 'standard', file);
    for await (const { pidfd } of pidfds) {
      got.push(pidfd);
      break;
    }
    await pidfds.close();

    const [x, y] = FdStream.pair();
    const fdsSeen = new Promise<number[]>((res) => y.once('fds', res));
    y.resume();
    x.write({ data: Buffer.from('with fds'), fds: [file] });
    got.push(...(await fdsSeen));
    x.destroy();
    y.destroy();

    assert.equal(got.length, 4);
    assert.deepEqual(inheritedByChild(got), []);
    got.forEach((fd) => closeSync(fd));
    closeSync(file);
    t.cleanup();
  }));
