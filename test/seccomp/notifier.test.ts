import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { FdServer } from 'fdpass';
import { listenSeccompAgent, type ReceivedContainerProcessState } from 'fdpass/runc';
import { SeccompNotifier, syscallName, syscallNumber, type SeccompRequest } from 'fdpass/seccomp';
import { Pidfd } from 'fdpass/pidfd';
import { buildPeer, fdTarget, isOpen, noLeak, repoRoot, tempDir } from '../helpers.js';
import { needs } from '../tools.js';
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

describe('SeccompNotifier with the real runc', needs('runc', 'busybox-static', 'root'), () => {
  test('an agent refuses mkdir with its errno, injects a file into open, lets the rest through', async () => {
    const t = tempDir();
    const id = runc.id();
    const hostFile = t.path('served.txt');
    writeFileSync(hostFile, 'served by the agent\n');
    const socketPath = t.path('agent.sock');
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      c.process.args = [
        '/bin/sh',
        '-c',
        'mkdir /tmp/refused; echo "mkdir=$?"; cat /magic; echo "cat=$?"; cat /nothing-here; echo "other=$?"',
      ];
      // openat: busybox cat, and runc's own start-up (its exec fifo), which
      // deadlocked an agent that waited for the state's end of file.
      notify(c, socketPath, ['mkdir', 'mkdirat', 'openat']);
    });
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(socketPath);
        const running = runc.run(['run', id], bundle);
        const got = (await agent.next()) as ReceivedContainerProcessState;
        await agent.close();
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
      });
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });

  test('the container killed mid-request: ENOENT for the answer, the iteration ends, nothing hangs', async () => {
    const t = tempDir();
    const id = runc.id();
    const socketPath = t.path('agent.sock');
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      c.process.args = ['/bin/mkdir', '/tmp/never'];
      notify(c, socketPath, ['mkdir', 'mkdirat']);
    });
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(socketPath);
        const running = runc.run(['run', '-d', id], bundle);
        const got = (await agent.next()) as ReceivedContainerProcessState;
        await agent.close();
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
      });
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });

  test('close() with a request pending: the syscall fails with ENOSYS in the container, never hangs', async () => {
    const t = tempDir();
    const id = runc.id();
    const socketPath = t.path('agent.sock');
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      c.process.args = ['/bin/sh', '-c', 'mkdir /tmp/x; echo "mkdir=$?"'];
      notify(c, socketPath, ['mkdir', 'mkdirat']);
    });
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(socketPath);
        const running = runc.run(['run', id], bundle);
        const got = (await agent.next()) as ReceivedContainerProcessState;
        await agent.close();
        const notifier = new SeccompNotifier(got.fds.seccompFd!);
        const req = (await notifier.next())!;
        assert.match(req.syscall!, /^mkdir(at)?$/);
        const waiting = notifier.next();
        notifier.close();
        assert.equal(await waiting, null);
        const { stdout, stderr } = await running;
        assert.equal(stdout, 'mkdir=1\n');
        assert.match(stderr, /Function not implemented/);
      });
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });

  test('respond with a value: the syscall returns it without running; addFd without send, then respond', async () => {
    const t = tempDir();
    const id = runc.id();
    const socketPath = t.path('agent.sock');
    const hostFile = t.path('at-fd-7.txt');
    writeFileSync(hostFile, 'read from fd 7\n');
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      // The shell's own chdir "succeeds" (value 0) but changes nothing, and
      // the agent installs fd 7 in the shell while chdir waits.
      c.process.args = ['/bin/sh', '-c', 'cd /tmp/fake && echo "cd=ok"; ls /tmp/fake; cat <&7'];
      notify(c, socketPath, ['chdir']);
    });
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(socketPath);
        const running = runc.run(['run', id], bundle);
        const got = (await agent.next()) as ReceivedContainerProcessState;
        await agent.close();
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
      });
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });
});

describe('SeccompNotifier with a C peer under its own filter', () => {
  test('a notification that vanished before it was received does not block the next receive', async () => {
    const peerPath = buildPeer('seccomp_peer');
    const t = tempDir();
    const served = t.path('magic.txt');
    writeFileSync(served, 'injected by the agent\n');
    try {
      await noLeak(async () => {
        const server = await FdServer.listen(t.path('agent.sock'));
        const peer = spawn(peerPath, [server.path as string], { stdio: ['pipe', 'pipe', 'inherit'] });
        let out = '';
        const vanished = new Promise<void>((resolve) =>
          peer.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.includes('vanished\n')) resolve();
          }),
        );
        const exited = new Promise((r) => peer.once('close', r));
        try {
          const sock = await server.accept();
          const m = (await sock.recv())!;
          await sock.close();
          assert.equal(m.data.toString(), 'seccompFd');
          using notifier = new SeccompNotifier(m.fds[0]!);
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
        } finally {
          peer.kill('SIGKILL');
          await exited;
          await server.close();
        }
      });
    } finally {
      t.cleanup();
    }
  });

  test('arguments are checked before any ioctl', async () => {
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
          const notifier = new SeccompNotifier(m.fds[0]!);
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
        } finally {
          peer.kill('SIGKILL');
          await exited;
          await server.close();
        }
      });
    } finally {
      t.cleanup();
    }
  });
});

test('a worker that ends closes the notify fd of a SeccompNotifier it did not close', async () => {
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
        const fd = m.fds[0]!;
        const url = pathToFileURL(join(repoRoot, 'dist', 'seccomp', 'index.js')).href;
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
      } finally {
        peer.kill('SIGKILL');
        await exited;
        await server.close();
      }
    });
  } finally {
    t.cleanup();
  }
});

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
