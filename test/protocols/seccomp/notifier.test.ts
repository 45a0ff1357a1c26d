import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { FdServer } from 'fdpass';
import { listenSeccompAgent, type ReceivedContainerProcessState } from 'fdpass/runc';
import { SeccompNotifier, syscallName, syscallNumber, type SeccompRequest } from 'fdpass/seccomp';
import { Pidfd } from 'fdpass/pidfd';
import { buildPeer, fdTarget, isOpen, noLeak, repoRoot, tempDir } from '../../helpers.js';
import { needs } from '../../tools.js';
import { makeRunc, type OciConfig } from '../runc/bundle.js';

const runc = makeRunc();
after(() => runc.cleanup());

const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';

/** Seccomp rules: allow everything, notify the agent of these syscalls. */
function notify(config: OciConfig, listenerPath: string, names: string[]): void {
  config.linux.seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    listenerPath,
    syscalls: [{ names, action: 'SCMP_ACT_NOTIFY' }],
  };
}

type TempDir = ReturnType<typeof tempDir>;

/**
 * Run `args` in a container (no terminal) whose filter notifies an agent of
 * the syscalls `names`; `body` gets the state the agent received, runc's
 * run, and a temp dir. The whole is counted for leaks; the container and
 * the dir are removed whatever happens.
 */
async function withRuncAgent(
  args: string[],
  names: string[],
  body: (got: ReceivedContainerProcessState, running: ReturnType<typeof runc.run>, t: TempDir) => Promise<void>,
  runArgs: string[] = [],
): Promise<void> {
  const t = tempDir();
  const id = runc.id();
  const socketPath = t.path('agent.sock');
  const bundle = runc.bundle((c) => {
    c.process.terminal = false;
    c.process.args = args;
    notify(c, socketPath, names);
  });
  try {
    await noLeak(async () => {
      const agent = await listenSeccompAgent(socketPath);
      const running = runc.run(['run', ...runArgs, id], bundle);
      const got = (await agent.next()) as ReceivedContainerProcessState;
      await agent.close();
      await body(got, running, t);
    });
  } finally {
    runc.remove(id);
    t.cleanup();
  }
}

/**
 * Start test/peers/seccomp_peer (a C program under its own filter), take the
 * notify fd it sends (message "seccompFd"), and run `body` with it. Counted
 * for leaks; the peer is killed and the dir removed whatever happens.
 */
async function withSeccompPeer(
  body: (fd: number, peer: ChildProcessByStdio<Writable, Readable, null>, exited: Promise<unknown>, t: TempDir) => Promise<void>,
): Promise<void> {
  const peerPath = buildPeer('seccomp_peer');
  const t = tempDir();
  try {
    await noLeak(async () => {
      const server = await FdServer.listen(t.path('agent.sock'));
      const peer = spawn(peerPath, [server.path as string], { stdio: ['pipe', 'pipe', 'inherit'] });
      const exited = new Promise((r) => peer.once('close', r));
      try {
        const sock = await server.accept();
        const m = (await sock.recv())!;
        await sock.close();
        assert.equal(m.data.toString(), 'seccompFd');
        await body(m.fds[0]!, peer, exited, t);
      } finally {
        peer.kill('SIGKILL');
        await exited;
        await server.close();
      }
    });
  } finally {
    t.cleanup();
  }
}

describe('SeccompNotifier with the real runc', needs('runc', 'busybox-static', 'root'), () => {
  test('an agent refuses mkdir with its errno, injects a file into open, lets the rest through', () =>
    withRuncAgent(
      ['/bin/sh', '-c', 'mkdir /tmp/refused; echo "mkdir=$?"; cat /magic; echo "cat=$?"; cat /nothing-here; echo "other=$?"'],
      // openat: busybox cat, and runc's own start-up (its exec fifo), which
      // deadlocked an agent that waited for the state's end of file.
      ['mkdir', 'mkdirat', 'openat'],
      async (got, running, t) => {
        const hostFile = t.path('served.txt');
        writeFileSync(hostFile, 'served by the agent\n');
        const served = openSync(hostFile, 'r');
        const seen: SeccompRequest[] = [];
        const paths: string[] = [];
        using notifier = new SeccompNotifier(got.fds.seccompFd!);
        assert.equal(notifier.fd, got.fds.seccompFd);
        for await (const req of notifier) {
          seen.push(req);
          if (req.syscall === 'mkdir' || req.syscall === 'mkdirat') {
            await notifier.respond(req, { error: 'EXDEV' });
          } else if (req.syscall === 'openat') {
            const path = await notifier.readString(req, req.args[1]!);
            paths.push(path);
            if (path === '/magic') assert.equal(await notifier.addFd(req, served, { send: true }), 3);
            else await notifier.respond(req, { continue: true });
          } else assert.fail(`unexpected ${req.syscall}`);
        }
        // The loop ended by itself: every process of the filter is gone.
        closeSync(served);
        const { stdout, stderr } = await running;
        assert.equal(stdout, 'mkdir=1\nserved by the agent\ncat=0\nother=1\n', stderr);
        assert.match(stderr, /mkdir: can't create directory '\/tmp\/refused': Invalid cross-device link/);
        assert.match(stderr, /cat: can't open '\/nothing-here': No such file or directory/);
        // runc's own open of its exec fifo came first, through the agent.
        assert.match(paths[0]!, /^\/proc\/self\/fd\/\d+$/);
        assert.ok(paths.includes('/magic') && paths.includes('/nothing-here'), paths.join(' '));
        const mkdir = seen.find((r) => r.syscall === 'mkdir' || r.syscall === 'mkdirat')!;
        assert.equal(mkdir.arch, arch);
        assert.equal(mkdir.nr, syscallNumber(mkdir.syscall!, arch));
        assert.ok(mkdir.pid > 0 && mkdir.pid !== process.pid);
        assert.equal(typeof mkdir.id, 'bigint');
        assert.equal(mkdir.args.length, 6);
        assert.ok(mkdir.args.every((a) => typeof a === 'bigint'));
        assert.equal(typeof mkdir.instructionPointer, 'bigint');
        assert.equal(await notifier.next(), null);
        await assert.rejects(notifier.respond(mkdir, { continue: true }), { code: 'ENOENT', syscall: 'ioctl' });
      },
    ));

  test('the container killed mid-request: ENOENT for the answer, the iteration ends, nothing hangs', () =>
    withRuncAgent(
      ['/bin/mkdir', '/tmp/never'],
      ['mkdir', 'mkdirat'],
      async (got, running) => {
        await running;
        const notifier = new SeccompNotifier(got.fds.seccompFd!);
        const req = (await notifier.next())!;
        assert.match(req.syscall!, /^mkdir(at)?$/);
        assert.equal(req.pid, got.state.pid, 'the container process itself (mkdir is its program)');
        assert.equal(await notifier.readString(req, req.syscall === 'mkdirat' ? req.args[1]! : req.args[0]!), '/tmp/never');
        assert.equal(notifier.isValid(req), true);
        // A pidfd of the container's process: take its stdout, then kill it.
        using target = Pidfd.open(req.pid);
        const stdout = target.getFd(1);
        assert.ok(fdTarget(stdout) !== null);
        closeSync(stdout);
        target.signal('SIGKILL');
        await target.exited();
        assert.equal(await notifier.next(), null, 'POLLHUP ends the iteration');
        assert.equal(notifier.isValid(req), false);
        await assert.rejects(notifier.respond(req, { error: 'EPERM' }), { code: 'ENOENT' });
        await assert.rejects(notifier.readString(req, req.args[0]!), { code: 'ENOENT' });
        notifier.close();
        assert.equal(notifier.fd, -1);
        assert.equal(await notifier.next(), null);
        assert.throws(() => notifier.isValid(req), { code: 'ERR_FDPASS_CLOSED' });
      },
      ['-d'],
    ));

  test('close() with a request pending: the syscall fails with ENOSYS in the container, never hangs', () =>
    withRuncAgent(['/bin/sh', '-c', 'mkdir /tmp/x; echo "mkdir=$?"'], ['mkdir', 'mkdirat'], async (got, running) => {
      const notifier = new SeccompNotifier(got.fds.seccompFd!);
      const req = (await notifier.next())!;
      assert.match(req.syscall!, /^mkdir(at)?$/);
      const waiting = notifier.next();
      notifier.close();
      assert.equal(await waiting, null);
      const { stdout, stderr } = await running;
      assert.equal(stdout, 'mkdir=1\n');
      assert.match(stderr, /Function not implemented/);
    }));

  test('respond with a value: the syscall returns it without running; addFd without send, then respond', () =>
    withRuncAgent(
      // The shell's own chdir "succeeds" (value 0) but changes nothing, and
      // the agent installs fd 7 in the shell while chdir waits.
      ['/bin/sh', '-c', 'cd /tmp/fake && echo "cd=ok"; ls /tmp/fake; cat <&7'],
      ['chdir'],
      async (got, running, t) => {
        const hostFile = t.path('at-fd-7.txt');
        writeFileSync(hostFile, 'read from fd 7\n');
        using notifier = new SeccompNotifier(got.fds.seccompFd!);
        const file = openSync(hostFile, 'r');
        const seen: string[] = [];
        for await (const req of notifier) {
          const path = await notifier.readString(req, req.args[0]!);
          seen.push(`${req.syscall} ${path}`);
          if (path !== '/tmp/fake') {
            await notifier.respond(req, { continue: true });
            continue;
          }
          assert.equal(req.pid, got.state.pid, 'the shell itself');
          assert.equal(await notifier.addFd(req, file, { targetFd: 7, cloexec: false }), 7);
          await notifier.respond(req, { value: 0 });
        }
        closeSync(file);
        const { stdout, stderr } = await running;
        assert.ok(seen.includes('chdir /tmp/fake'), seen.join(', '));
        assert.equal(stdout, 'cd=ok\nread from fd 7\n');
        assert.match(stderr, /\/tmp\/fake: No such file or directory/);
      },
    ));
});

describe('SeccompNotifier with a C peer under its own filter', () => {
  test('a notification that vanished before it was received does not block the next receive', () =>
    withSeccompPeer(async (notifyFd, peer, exited, t) => {
      const served = t.path('magic.txt');
      writeFileSync(served, 'injected by the agent\n');
      let out = '';
      const vanished = new Promise<void>((resolve) =>
        peer.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('vanished\n')) resolve();
        }),
      );
      using notifier = new SeccompNotifier(notifyFd);
      // The kernel's count is off by one now: only readiness may lead to a receive.
      await vanished;
      const first = notifier.next();
      peer.stdin.write('g');
      const mkdir = (await first)!;
      assert.equal(mkdir.syscall, 'mkdirat');
      assert.equal(mkdir.pid, peer.pid);
      assert.equal(BigInt.asIntN(32, mkdir.args[0]!), -100n); // AT_FDCWD
      assert.equal(await notifier.readString(mkdir, mkdir.args[1]!), '/tmp/refused');
      assert.equal(notifier.isValid(mkdir), true);
      await notifier.respond(mkdir, { error: 'EACCES' });
      assert.equal(notifier.isValid(mkdir), false);
      // Answered already: EINPROGRESS until the process has taken the answer, ENOENT after.
      await assert.rejects(notifier.respond(mkdir, { continue: true }), (err: { code: string }) =>
        ['EINPROGRESS', 'ENOENT'].includes(err.code),
      );
      const open = (await notifier.next())!;
      assert.equal(open.syscall, 'openat');
      assert.equal(await notifier.readString(open, open.args[1]!), '/magic');
      const fd = openSync(served, 'r');
      assert.ok((await notifier.addFd(open, fd, { send: true })) >= 3);
      closeSync(fd);
      // The peer exits: the filter has no process left.
      assert.equal(await notifier.next(), null);
      await exited;
      assert.equal(out, 'vanished\nmkdirat=-1 errno=EACCES\nopenat=fd read=injected by the agent\n');
    }));

  test('arguments are checked before any ioctl', () =>
    withSeccompPeer(async (notifyFd) => {
      const notifier = new SeccompNotifier(notifyFd);
      const req = { id: 1n } as SeccompRequest;
      for (const bad of [
        {},
        { continue: false },
        { error: 'ENOPE' },
        { error: 0 },
        { value: 1.5 },
        { value: 2n ** 63n },
        { continue: true, value: 1 },
      ]) {
        assert.throws(
          () => notifier.respond(req, bad as never),
          { name: /TypeError|RangeError/ },
          JSON.stringify(bad, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
        );
      }
      assert.throws(() => notifier.respond({ id: 1 } as unknown as SeccompRequest, { continue: true }), {
        code: 'ERR_INVALID_ARG_TYPE',
      });
      assert.throws(() => notifier.addFd(req, -1), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => notifier.addFd(req, 0, { targetFd: -2 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => notifier.addFd(req, 0, { send: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
      await assert.rejects(notifier.readString(req, -1n), { code: 'ERR_OUT_OF_RANGE' });
      await assert.rejects(notifier.readString(req, 0n, 0), { code: 'ERR_OUT_OF_RANGE' });
      // A well-formed answer to a request that does not exist.
      await assert.rejects(notifier.respond(req, { value: -1n }), { code: 'ENOENT', syscall: 'ioctl' });
      assert.equal(notifier.isValid(req), false);
      await assert.rejects(notifier.next({ signal: AbortSignal.abort() }), { name: 'AbortError' });
      notifier.close();
      notifier.close();
      assert.throws(() => notifier.respond(req, { continue: true }), { code: 'ERR_FDPASS_CLOSED' });
    }));
});

test('a worker that ends closes the notify fd of a SeccompNotifier it did not close', () =>
  withSeccompPeer(async (fd) => {
    const url = pathToFileURL(join(repoRoot, 'dist', 'protocols', 'seccomp', 'index.js')).href;
    const worker = new Worker(
      `import(${JSON.stringify(url)}).then(({ SeccompNotifier }) => {
  const { parentPort, workerData } = require('node:worker_threads');
  const notifier = new SeccompNotifier(workerData.fd);
  void notifier.next();
  parentPort.postMessage(notifier.fd);
});`,
      { eval: true, workerData: { fd } },
    );
    assert.equal(await new Promise((r) => worker.once('message', r)), fd);
    await worker.terminate();
    assert.equal(isOpen(fd), false, 'the worker closed the notify fd');
  }));

describe('SeccompNotifier arguments and names', () => {
  test('refuses an fd that is no seccomp notify fd and leaves it open; checks arguments before any ioctl', async () => {
    await noLeak(async () => {
      const fd = openSync('/dev/null', 'r');
      assert.throws(() => new SeccompNotifier(fd), { code: 'ERR_FDPASS_BAD_FD' });
      assert.ok(isOpen(fd));
      closeSync(fd);
      assert.throws(() => new SeccompNotifier(fd), { code: 'EBADF' });
      assert.throws(() => new SeccompNotifier(-1), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => new SeccompNotifier('3' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE' });
    });
  });

  test('syscall names for x86_64 and aarch64', () => {
    assert.equal(syscallName(83, 'x86_64'), 'mkdir');
    assert.equal(syscallName(257, 'x86_64'), 'openat');
    assert.equal(syscallName(435, 'x86_64'), 'clone3');
    assert.equal(syscallName(34, 'aarch64'), 'mkdirat');
    assert.equal(syscallName(56, 'aarch64'), 'openat');
    assert.equal(syscallName(221, 'aarch64'), 'execve');
    assert.equal(syscallName(462, 'aarch64'), 'mseal');
    assert.equal(syscallName(1000, 'x86_64'), undefined);
    assert.equal(syscallName(335, 'x86_64'), undefined);
    assert.equal(syscallName(0, 'riscv64'), undefined);
    assert.equal(syscallNumber('openat', 'aarch64'), 56);
    assert.equal(syscallNumber('mkdir', 'aarch64'), undefined);
  });
});
