// Pidfd.exited() resolves with how the process ended: for our children,
// another's child reaped by its parent (PIDFD_INFO_EXIT, Linux >= 6.15),
// another's zombie (/proc), and, as on a kernel without PIDFD_INFO_EXIT,
// what it falls back to (waitid for our unreaped child) and where it cannot
// tell (known: false).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { release } from 'node:os';
import { Pidfd, type PidfdExitStatus } from 'fdpass/pidfd';
import { noLeak, repoRoot, until } from '../../helpers.js';

type PidfdModule = typeof import('../../../dist/transport/pidfd.js');
type NativeModule = typeof import('../../../dist/base/native.js');
const { exitStatusOf } = (await import(new URL(`file://${repoRoot}/dist/transport/pidfd.js`).href)) as PidfdModule;
const { native } = (await import(new URL(`file://${repoRoot}/dist/base/native.js`).href)) as NativeModule;

const [major, minor] = release().split('.').map(Number) as [number, number];
const hasExitInfo = major > 6 || (major === 6 && minor >= 15);
const noExitInfo = hasExitInfo ? false : `Linux ${release()} has no PIDFD_INFO_EXIT (6.15)`;

const POLLIN = 1;

function exitedWith(code: number): PidfdExitStatus {
  return { code, signal: null, coreDumped: false, known: true };
}

/** Resolves with the first line the child prints. */
async function firstLine(child: ChildProcess): Promise<string> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes('\n')) return out.slice(0, out.indexOf('\n'));
  }
  throw new Error('the child printed no line');
}

/**
 * A grandchild that exits with `code` once told (a line on stdin), and its
 * parent, a shell that either waits for it (reaps it) or never does (exec
 * sleep: the grandchild stays a zombie until the shell dies).
 */
async function grandchild(reaps: boolean): Promise<{ pid: number; parent: ChildProcess; go: () => void }> {
  const tail = reaps ? 'wait; read y' : 'exec sleep 1000';
  // A background job's stdin is /dev/null (its own redirections apply after
  // that): the line comes through fd 3, a copy of stdin made beforehand.
  const parent = spawn('sh', ['-c', `exec 3<&0; sh -c 'read x <&3; exit 7' & echo $!; exec 3<&-; ${tail}`], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const pid = Number(await firstLine(parent));
  assert.ok(pid > 0);
  return { pid, parent, go: () => parent.stdin!.write('go\n') };
}

async function ended(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
}

describe('Pidfd.exited() resolves with how the process ended', () => {
  test('our child: exit code, signal', () =>
    noLeak(async () => {
      const child = spawn('sh', ['-c', 'read x; exit 42'], { stdio: ['pipe', 'ignore', 'inherit'] });
      const p = Pidfd.open(child.pid!);
      const waiting = p.exited();
      child.stdin!.end('go\n');
      assert.deepEqual(await waiting, exitedWith(42));
      // Asked once: the same answer afterwards.
      assert.deepEqual(await p.exited(), exitedWith(42));
      p.close();
      await ended(child);

      const killed = spawn('sleep', ['1000'], { stdio: 'ignore' });
      using k = Pidfd.open(killed.pid!);
      k.signal('SIGKILL');
      assert.deepEqual(await k.exited(), { code: null, signal: 'SIGKILL', coreDumped: false, known: true });
      await ended(killed);

      // A signal with an alias gets child_process's name for it: SIGABRT, not SIGIOT.
      const aborted = spawn('sleep', ['1000'], { stdio: 'ignore' });
      using ab = Pidfd.open(aborted.pid!);
      ab.signal('SIGABRT');
      const st = await ab.exited();
      await ended(aborted);
      assert.equal(st.signal, 'SIGABRT');
      assert.equal(st.signal, aborted.signalCode);
    }));

  test("another's child, reaped by its parent: the pidfd's exit status (PIDFD_INFO_EXIT)", { skip: noExitInfo }, () =>
    noLeak(async () => {
      const { pid, parent, go } = await grandchild(true);
      const p = Pidfd.open(pid);
      const waiting = p.exited();
      go();
      assert.deepEqual(await waiting, exitedWith(7));
      // Reaped now (its parent's wait returned): the kernel alone answers.
      parent.stdin!.end('done\n');
      await ended(parent);
      assert.deepEqual(exitStatusOf(p.fd, p.pid, true), exitedWith(7));
      p.close();
    }),
  );

  test("another's zombie that nobody reaps: its exit code from /proc; without it, known: false", () =>
    noLeak(async () => {
      const { pid, parent, go } = await grandchild(false);
      const p = Pidfd.open(pid);
      const waiting = p.exited();
      go();
      assert.deepEqual(await waiting, exitedWith(7));
      // As on an older kernel: the zombie's /proc still answers...
      assert.deepEqual(exitStatusOf(p.fd, p.pid, false), exitedWith(7));
      // ...and once reaped (its parent killed: init or a subreaper reaps it),
      // only the pidfd's exit status does; without it nobody can tell.
      parent.kill('SIGKILL');
      await ended(parent);
      await p.exited();
      await until(() => native.pidfdSendSignal(p.fd, 0) !== 0, 'the reaped process no longer signalable through its pidfd');
      assert.deepEqual(exitStatusOf(p.fd, p.pid, false), { code: null, signal: null, coreDumped: false, known: false });
      if (hasExitInfo) assert.deepEqual(exitStatusOf(p.fd, p.pid, true), exitedWith(7));
      p.close();
    }));

  test('without PIDFD_INFO_EXIT, our child not reaped yet: waitid(P_PIDFD, WNOWAIT), leaving it to child_process', () =>
    noLeak(async () => {
      const child = spawn('sh', ['-c', 'read x; exit 5'], { stdio: ['pipe', 'ignore', 'inherit'] });
      await once(child, 'spawn');
      const p = Pidfd.open(child.pid!);
      child.stdin!.write('go\n');
      // Block until it exits, without returning to the event loop: libuv
      // cannot reap it meanwhile (it reaps from the loop).
      assert.equal(native.poll(p.fd, POLLIN, 10_000), 1);
      // A pid that is not in /proc (pid 0: another namespace) leaves waitid alone to answer.
      assert.deepEqual(exitStatusOf(p.fd, 0, false), exitedWith(5));
      // WNOWAIT: child_process still gets its exit.
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 5);
      p.close();
      child.stdin!.destroy();
    }));
});
