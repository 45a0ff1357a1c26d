import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, fstatSync } from 'node:fs';
import { FdSocket, type FdPassError } from 'fdpass';
import { listenSeccompAgent, sendContainerProcessState, type ContainerProcessState, type ReceivedContainerProcessState } from 'fdpass/runc';
import { fdTarget, noLeak, tempDir } from '../../helpers.js';
import { OCI_RUNTIMES, makeRunc, type OciConfig } from './bundle.js';
import { errors, pythonPeer } from './peers.js';
import { have, needs } from '../../tools.js';

function sampleState(extra: Partial<ContainerProcessState> = {}): ContainerProcessState {
  return {
    ociVersion: '1.0.2',
    fds: ['seccompFd'],
    pid: process.pid,
    metadata: 'from-a-test',
    state: { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: process.pid, bundle: '/tmp/b', annotations: { a: 'b' } },
    ...extra,
  };
}

// The same agent for every OCI runtime. What differs, as sent: the state's
// ociVersion (runc 1.3.6: "1.2.1", crun 1.8.1: "0.2.0"); crun pretty-prints
// the JSON; all three name one fd, seccompFd. crun also sends the same state
// to the path of its `run.oci.seccomp.receiver` annotation (the dotted name:
// crun 1.8.1 ignores `run.oci.seccomp_receiver`).
for (const rt of OCI_RUNTIMES) {
  const runc = makeRunc(rt);
  after(() => runc.cleanup());
  describe(`listenSeccompAgent with the real ${rt.name}`, needs(...rt.needs), () => {
    const receivers: [string, (c: OciConfig, path: string) => void][] = [
      [
        'linux.seccomp.listenerPath',
        (c, path) => {
          c.linux.seccomp = { ...(c.linux.seccomp as object), listenerPath: path, listenerMetadata: 'agent-metadata' };
        },
      ],
    ];
    if (rt.kind === 'crun') {
      receivers.push([
        'the run.oci.seccomp.receiver annotation',
        (c, path) => {
          c.annotations = { ...c.annotations, 'run.oci.seccomp.receiver': path };
        },
      ]);
    }
    for (const [how, configure] of receivers) {
      test(`${how}: the full state (> 4096 bytes), metadata, and a seccomp notify fd`, async () => {
        const t = tempDir();
        const id = runc.id();
        const big = 'x'.repeat(6000);
        const socketPath = t.path('agent.sock');
        const bundle = runc.bundle((c) => {
          c.process.terminal = false;
          c.process.args = ['/bin/mkdir', '/tmp/blocked'];
          c.annotations = { 'org.fdpass.big': big, 'org.fdpass.small': 'yes' };
          c.linux.seccomp = {
            defaultAction: 'SCMP_ACT_ALLOW',
            syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_NOTIFY' }],
          };
          configure(c, socketPath);
        });
        try {
          await noLeak(async () => {
            const agent = await listenSeccompAgent(socketPath);
            const errs = errors(agent);
            const running = runc.run(['run', '-d', id], bundle);
            const got = (await agent.next()) as ReceivedContainerProcessState;
            await running;
            const { state, fds, peer } = got;
            assert.equal(peer.uid, 0);
            assert.deepEqual(state.fds, ['seccompFd']);
            assert.deepEqual(Object.keys(fds), ['seccompFd']);
            assert.equal(fdTarget(fds.seccompFd!), 'anon_inode:seccomp notify');
            assert.match(state.ociVersion, /^\d+\.\d+\.\d+/);
            assert.equal(state.metadata, how === 'linux.seccomp.listenerPath' ? 'agent-metadata' : undefined);
            assert.equal(state.state.id, id);
            assert.equal(state.state.status, 'creating');
            assert.equal(state.state.bundle, bundle);
            assert.equal(state.state.annotations?.['org.fdpass.big'], big);
            assert.equal(state.state.annotations?.['org.fdpass.small'], 'yes');
            assert.ok(JSON.stringify(state).length > 4096);
            assert.ok(state.pid > 0);
            assert.equal(state.state.pid, state.pid);
            // The container is blocked in mkdir, waiting for us: closing the fd lets it go on.
            closeSync(fds.seccompFd!);
            assert.deepEqual(errs.list, []);
            await agent.close();
          });
        } finally {
          runc.remove(id);
          t.cleanup();
        }
      });
    }
  });
}

describe('seccomp agent against bad peers', () => {
  test('garbage JSON, wrong fd counts, fds without state, early close, oversize, silence: coded errors, nothing leaked, still serving', async (ctx) => {
    if (!have(ctx, 'python3')) return;
    const t = tempDir();
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(t.path('agent.sock'), { timeout: 2000, maxStateBytes: 8192 });
        const errs = errors(agent);
        const peer = async (body: string, args: string[] = []): Promise<FdPassError> => {
          const e = errs.next();
          await pythonPeer(agent.path, body, args);
          return e;
        };
        const good = JSON.stringify(sampleState());
        const withFds = (payload: string, nfds: number): string =>
          `fd = os.open('/dev/null', os.O_RDONLY)\nsocket.send_fds(s, [${payload}], [fd] * ${nfds})\ns.close()`;
        const cases: [string, string, string[]][] = [
          ['ERR_FDPASS_BAD_MESSAGE', withFds(`b'{"ociVersion": garbage'`, 1), []],
          ['ERR_FDPASS_FD_COUNT_MISMATCH', `s.sendall(sys.argv[2].encode())\ns.close()`, [good]],
          ['ERR_FDPASS_FD_COUNT_MISMATCH', withFds('sys.argv[2].encode()', 2), [good]],
          ['ERR_FDPASS_BAD_MESSAGE', withFds(`b' '`, 1), []],
          ['ERR_FDPASS_BAD_MESSAGE', withFds('sys.argv[2].encode()', 1), [good.replace('"creating"', '"bogus"')]],
          ['ERR_FDPASS_BAD_MESSAGE', withFds(`b'\\xff\\xfe'`, 1), []],
          ['ERR_FDPASS_EOF', 's.close()', []],
          ['ERR_FDPASS_MESSAGE_TOO_LARGE', withFds(`b'{' + b' ' * 9000`, 1), []],
          ['ERR_FDPASS_BAD_MESSAGE', withFds('sys.argv[2].encode() + b" trailing"', 1), [good]],
          ['ERR_FDPASS_BAD_MESSAGE', withFds(`b'[1, 2]'`, 1), []],
        ];
        for (const [code, body, args] of cases) {
          const err = await peer(body, args);
          assert.equal(err.code, code, `${body}: ${err.message}`);
        }
        const silence = errs.next();
        const silent = await FdSocket.connect(agent.path);
        assert.equal((await silence).code, 'ERR_FDPASS_TIMEOUT');
        await silent.close();

        // Still serving: python sends the state in pieces, the fd with the first.
        const split = await Promise.all([
          agent.next(),
          pythonPeer(
            agent.path,
            `data = sys.argv[2].encode()\nfd = os.open('/dev/null', os.O_RDONLY)\nsocket.send_fds(s, [data[:100]], [fd])\nfor i in range(100, len(data), 1000):\n    s.sendall(data[i:i+1000])\ns.close()`,
            [JSON.stringify(sampleState({ metadata: 'm'.repeat(5000) }))],
          ),
        ]);
        const r = split[0] as ReceivedContainerProcessState;
        assert.equal(r.state.metadata, 'm'.repeat(5000));
        assert.equal(fdTarget(r.fds.seccompFd!), '/dev/null');
        closeSync(r.fds.seccompFd!);
        assert.equal(errs.list.length, cases.length + 1);
        await agent.close();
      });
    } finally {
      t.cleanup();
    }
  });

  test(
    'the state is complete when its JSON is: a peer that keeps the connection open, as runc 1.1.5 does, is served at once',
    needs('python3'),
    async () => {
      const t = tempDir();
      try {
        await noLeak(async () => {
          const agent = await listenSeccompAgent(t.path('agent.sock'), { timeout: 60_000 });
          const state = JSON.stringify(sampleState({ metadata: '{"braces": "[in a string]}", "escaped": "\\"}' }));
          const code = `import socket, os, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
data = sys.argv[2].encode()
socket.send_fds(s, [data[:7]], [os.open('/dev/null', os.O_RDONLY)])
s.sendall(data[7:])
sys.stdin.read()`;
          const peer = spawn('python3', ['-c', code, agent.path, state], { stdio: ['pipe', 'ignore', 'inherit'] });
          const closed = new Promise((r) => peer.once('close', r));
          try {
            const got = (await agent.next()) as ReceivedContainerProcessState;
            assert.equal(got.state.metadata, '{"braces": "[in a string]}", "escaped": "\\"}');
            assert.equal(got.peer.pid, peer.pid);
            assert.equal(fdTarget(got.fds.seccompFd!), '/dev/null');
            closeSync(got.fds.seccompFd!);
          } finally {
            peer.kill('SIGKILL');
            await closed;
          }
          await agent.close();
        });
      } finally {
        t.cleanup();
      }
    },
  );

  test('sendContainerProcessState: fds by order or by name, several names, and argument checks', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const agent = await listenSeccompAgent(t.path('agent.sock'));
        const a = openSync('/dev/null', 'r');
        const b = openSync('/proc/self/stat', 'r');
        await sendContainerProcessState(agent.path, sampleState({ fds: ['seccompFd', 'extra'] }), [a, b]);
        const first = (await agent.next()) as ReceivedContainerProcessState;
        assert.deepEqual(Object.keys(first.fds), ['seccompFd', 'extra']);
        assert.equal(fstatSync(first.fds.seccompFd!).ino, fstatSync(a).ino);
        assert.equal(fstatSync(first.fds.extra!).ino, fstatSync(b).ino);
        closeSync(first.fds.seccompFd!);
        closeSync(first.fds.extra!);

        // Over an FdSocket we keep: the state ends with a half-close.
        const sock = await FdSocket.connect(agent.path);
        await sendContainerProcessState(sock, sampleState(), { seccompFd: a });
        const second = (await agent.next()) as ReceivedContainerProcessState;
        assert.equal(fstatSync(second.fds.seccompFd!).ino, fstatSync(a).ino);
        closeSync(second.fds.seccompFd!);
        assert.equal(await sock.recv(), null); // the agent closed its side
        await sock.close();

        await assert.rejects(sendContainerProcessState(agent.path, sampleState(), []), { code: 'ERR_OUT_OF_RANGE' });
        await assert.rejects(sendContainerProcessState(agent.path, sampleState(), { other: a }), { code: 'ERR_INVALID_ARG_VALUE' });
        const bad = { ...sampleState(), pid: -1 };
        await assert.rejects(sendContainerProcessState(agent.path, bad, [a]), { code: 'ERR_INVALID_ARG_VALUE' });
        closeSync(a);
        closeSync(b);
        await agent.close();
      });
    } finally {
      t.cleanup();
    }
  });
});
