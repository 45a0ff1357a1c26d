import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { FdServer, FdSocket } from 'fdpass';
import { Pidfd } from 'fdpass/pidfd';
import { FdStream } from 'fdpass/stream';
import { listenPidfdSocket } from 'fdpass/runc';
import { fdTarget, isOpen, noLeak, repoRoot, tempDir } from '../helpers.js';
import { needs } from '../tools.js';

/** The fd's close-on-exec flag, from /proc/self/fdinfo. */
function cloexec(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1]!;
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

/** Running: not gone and not a zombie waiting for its parent (init may reap it late). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A process that is not our child: sh starts `sleep` in the background and
 * exits, so the sleep is reparented (to init or a subreaper).
 */
function orphanSleep(): number {
  const r = spawnSync('sh', ['-c', 'sleep 1000 >/dev/null 2>&1 </dev/null & echo $!'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const pid = Number(r.stdout.trim());
  assert.ok(pid > 0);
  return pid;
}

/** Resolves with a line the child prints, once it has printed it. */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`the child exited (${code}) before printing a line`)));
  });
}

async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe('Pidfd', () => {
  test('open() on a process that is not our child: pid, signal, exited, ESRCH after', async () => {
    const pid = orphanSleep();
    try {
      await noLeak(async () => {
        const p = Pidfd.open(pid);
        assert.equal(p.pid, pid);
        assert.equal(fdTarget(p.fd), 'anon_inode:[pidfd]');
        assert.ok(cloexec(p.fd));
        p.signal(0);
        let done = false;
        const exited = p.exited().then(() => (done = true));
        await turns();
        assert.equal(done, false, 'exited() resolved while the process runs');
        p.signal('SIGTERM');
        await exited;
        assert.equal(running(pid), false);
        // Later calls resolve at once.
        await p.exited();
        p.close();
        p.close();
        assert.equal(p.fd, -1);
        assert.throws(() => p.signal(0), { code: 'ERR_FDPASS_CLOSED' });
      });
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('signals by name and number; argument errors before any syscall', async () => {
    const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
    try {
      await noLeak(async () => {
        using p = Pidfd.open(child.pid!);
        assert.throws(() => p.signal('SIGNOPE' as NodeJS.Signals), { name: 'TypeError', code: 'ERR_UNKNOWN_SIGNAL' });
        assert.throws(() => p.signal(65), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
        assert.throws(() => p.signal(1.5), { code: 'ERR_OUT_OF_RANGE' });
        assert.throws(() => p.signal(null as unknown as number), { code: 'ERR_INVALID_ARG_TYPE' });
        const exit = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));
        p.signal(9);
        assert.equal(await exit, 'SIGKILL');
        // Reaped by Node: the pidfd still names it, it has exited, and signals fail.
        await p.exited();
        assert.throws(() => p.signal(), { code: 'ESRCH', syscall: 'pidfd_send_signal' });
      });
      assert.throws(() => Pidfd.open('1' as unknown as number), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => Pidfd.open(0), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => Pidfd.open(-1), { code: 'ERR_OUT_OF_RANGE' });
      // A pid no process has: pid_max itself (pids are allocated below it).
      // Not a reaped child's pid: another process may take it meanwhile.
      const none = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
      assert.throws(() => Pidfd.open(none), { code: 'ESRCH', errno: -3, syscall: 'pidfd_open' });
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('exited({ signal }) aborts without touching the process; close() rejects waiters', async () => {
    const pid = orphanSleep();
    try {
      await noLeak(async () => {
        const p = Pidfd.open(pid);
        const controller = new AbortController();
        const waiting = p.exited({ signal: controller.signal });
        controller.abort();
        await assert.rejects(waiting, { name: 'AbortError', code: 'ABORT_ERR' });
        await assert.rejects(p.exited({ signal: AbortSignal.abort() }), { name: 'AbortError' });
        await assert.rejects(p.exited({ signal: 'x' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
        assert.equal(running(pid), true);
        const pending = p.exited();
        p.close();
        await assert.rejects(pending, { code: 'ERR_FDPASS_CLOSED' });
        await assert.rejects(p.exited(), { code: 'ERR_FDPASS_CLOSED' });
        assert.equal(running(pid), true);
      });
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  test('a pending exited() keeps the process alive until the other process exits', () => {
    // A child script waits for an orphan it did not spawn, then prints.
    const pid = orphanSleep();
    const url = pathToFileURL(join(repoRoot, 'dist', 'protocols', 'pidfd', 'index.js')).href;
    const code = `import { Pidfd } from ${JSON.stringify(url)};
const p = Pidfd.open(${pid});
setImmediate(() => process.kill(${pid}, 'SIGTERM')); // then nothing but exited() holds the process
p.exited().then(() => { p.close(); console.log('exited'); });`;
    try {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'exited\n');
      assert.equal(r.stderr, '');
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('getFd() takes a close-on-exec copy of another process fd; EBADF, EPERM coded', needs('python3', 'root'), async () => {
    const t = tempDir();
    const file = t.path('secret.txt');
    writeFileSync(file, 'taken with pidfd_getfd\n');
    const child = spawn(
      'python3',
      ['-c', 'import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint(fd, flush=True)\nsys.stdin.read()', file],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    try {
      const targetFd = Number(await firstLine(child));
      await noLeak(async () => {
        using p = Pidfd.open(child.pid!);
        const fd = p.getFd(targetFd);
        try {
          assert.equal(fdTarget(fd), file);
          assert.ok(cloexec(fd));
          const buf = Buffer.alloc(100);
          assert.equal(buf.toString('utf8', 0, readSync(fd, buf, 0, 100, 0)), 'taken with pidfd_getfd\n');
        } finally {
          closeSync(fd);
        }
        assert.throws(() => p.getFd(9999), { code: 'EBADF', syscall: 'pidfd_getfd' });
        assert.throws(() => p.getFd(-1), { code: 'ERR_OUT_OF_RANGE' });
      });
      // Without ptrace rights (uid 65534 over init): EPERM, coded.
      const url = pathToFileURL(join(repoRoot, 'dist', 'protocols', 'pidfd', 'index.js')).href;
      const code = `import { Pidfd } from ${JSON.stringify(url)};
const p = Pidfd.open(1);
try { p.getFd(0); console.log('no error'); } catch (e) { console.log(e.code, e.syscall); }
p.close();`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
        encoding: 'utf8',
        uid: 65534,
        gid: 65534,
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'EPERM pidfd_getfd\n');
    } finally {
      child.kill('SIGKILL');
      t.cleanup();
    }
  });

  test('fromFd(): adopts a pidfd received from a peer; refuses other fds and leaves them open', needs('python3'), async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        await using listener = await listenPidfdSocket(t.path('pidfd.sock'));
        // A python peer sends a pidfd of itself, as runc does with --pidfd-socket.
        const peer = spawn(
          'python3',
          [
            '-c',
            "import socket, os, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nsocket.send_fds(s, [b'standard'], [os.pidfd_open(os.getpid())])\ns.close()\nsys.stdin.read()",
            listener.path,
          ],
          { stdio: ['pipe', 'ignore', 'inherit'] },
        );
        const exit = new Promise<NodeJS.Signals | null>((r) => peer.once('exit', (_c, s) => r(s)));
        try {
          const got = (await listener.next())!;
          assert.equal(got.kind, 'standard');
          using p = Pidfd.fromFd(got.pidfd);
          assert.equal(p.fd, got.pidfd);
          assert.equal(p.pid, peer.pid);
          p.signal('SIGTERM');
          await p.exited();
          assert.equal(await exit, 'SIGTERM');
        } finally {
          peer.kill('SIGKILL');
        }
        const other = openSync('/dev/null', 'r');
        assert.throws(() => Pidfd.fromFd(other), { code: 'ERR_FDPASS_BAD_FD' });
        assert.ok(isOpen(other), 'a refused fd stays with the caller');
        closeSync(other);
        assert.throws(() => Pidfd.fromFd(other), { code: 'EBADF' });
        assert.throws(() => Pidfd.fromFd(-1), { code: 'ERR_OUT_OF_RANGE' });
      });
    } finally {
      t.cleanup();
    }
  });
});

test('a worker that ends closes the pidfds it did not close, waiting or not', async () => {
  const pid = orphanSleep();
  try {
    await noLeak(async () => {
      const url = pathToFileURL(join(repoRoot, 'dist', 'protocols', 'pidfd', 'index.js')).href;
      // The worker holds both Pidfds: one nobody references is collected,
      // and its fd closed, by the GC (on Node 24 under load that happened
      // before this thread looked, in 5 runs of 20).
      const worker = new Worker(
        `import(${JSON.stringify(url)}).then(({ Pidfd }) => {
  const { parentPort, workerData } = require('node:worker_threads');
  const idle = Pidfd.open(workerData.pid);
  const waiting = Pidfd.open(workerData.pid);
  void waiting.exited();
  globalThis.held = [idle, waiting];
  parentPort.postMessage([idle.fd, waiting.fd]);
});`,
        { eval: true, workerData: { pid } },
      );
      const fds = await new Promise<number[]>((r) => worker.once('message', r));
      assert.deepEqual(fds.map(fdTarget), ['anon_inode:[pidfd]', 'anon_inode:[pidfd]']);
      // terminate() resolves on 'exit', which Node emits once it joined the
      // worker's thread (node_worker.cc: JoinThread, then OnThreadStopped);
      // that thread ran the environment's cleanup hooks, which close the
      // pidfds, before it ended. So they are closed now: no wait.
      await worker.terminate();
      const open = fds.filter((fd) => fdTarget(fd) === 'anon_inode:[pidfd]');
      assert.deepEqual(open, [], 'the pidfds are closed when terminate() resolves');
    });
    assert.equal(running(pid), true, 'the process is untouched');
  } finally {
    process.kill(pid, 'SIGKILL');
  }
});

describe('peerPidfd (SO_PEERPIDFD)', () => {
  test('FdSocket: the peer process of a socketpair and of a real connection', needs('python3'), async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const [a, b] = FdSocket.pair();
        const self = a.peerPidfd();
        assert.equal(self.pid, process.pid);
        assert.ok(cloexec(self.fd));
        self.close();
        await a.close();
        await b.close();
        assert.throws(() => a.peerPidfd(), { code: 'ERR_FDPASS_CLOSED' });

        const server = await FdServer.listen(t.path('s.sock'));
        const peer = spawn(
          'python3',
          ['-c', 'import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nsys.stdin.read()', server.path as string],
          {
            stdio: ['pipe', 'ignore', 'inherit'],
          },
        );
        const exit = new Promise<NodeJS.Signals | null>((r) => peer.once('exit', (_c, s) => r(s)));
        try {
          const sock = await server.accept();
          using p = sock.peerPidfd();
          assert.equal(p.pid, peer.pid);
          assert.equal(p.pid, sock.peer.pid);
          p.signal('SIGTERM');
          await p.exited();
          assert.equal(await exit, 'SIGTERM');
          await sock.close();
        } finally {
          peer.kill('SIGKILL');
          await server.close();
        }
      });
    } finally {
      t.cleanup();
    }
  });

  test('FdStream: the peer of a stream pair', async () => {
    await noLeak(async () => {
      const [a, b] = FdStream.pair();
      using p = b.peerPidfd();
      assert.equal(p.pid, process.pid);
      a.destroy();
      b.destroy();
      await new Promise((r) => b.once('close', r));
      assert.throws(() => b.peerPidfd(), { code: 'ERR_FDPASS_CLOSED' });
    });
  });
});
