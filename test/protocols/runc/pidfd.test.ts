import { after, test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, readFileSync } from 'node:fs';
import { FdSocket, type FdPassError } from 'fdpass';
import { listenPidfdSocket, sendPidfd, type ReceivedPidfd } from 'fdpass/runc';
import { fdTarget, noLeak, tempDir } from '../../helpers.js';
import { errors, pythonPeer } from './peers.js';
import { needs } from '../../tools.js';
import { CRUN, RUNC_SID, makeRunc } from './bundle.js';

/** The pid a pidfd refers to, from /proc/self/fdinfo. */
function pidOf(pidfd: number): number {
  const m = /^Pid:\s+(-?\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'));
  assert.ok(m, 'a pidfd has a Pid: line in its fdinfo');
  return Number(m[1]);
}

// A python3 peer that starts a child, opens a pidfd on it (pidfd_open), sends
// it as runc does, prints the child's pid, then reaps the child.
const sendChildPidfd = `import subprocess
child = subprocess.Popen(['sleep', '30'])
pidfd = os.pidfd_open(child.pid)
socket.send_fds(s, [sys.argv[2].encode()], [pidfd])
print(child.pid, flush=True)
s.close()
child.kill()
child.wait()`;

describe('listenPidfdSocket', needs('python3'), () => {
  test('a real pidfd from python3 (pidfd_open on a child), then re-sent with sendPidfd', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const listener = await listenPidfdSocket(t.path('pidfd.sock'));
        const [got, out] = await Promise.all([listener.next(), pythonPeer(listener.path, sendChildPidfd, ['standard'])]);
        const { kind, pidfd, peer } = got as ReceivedPidfd;
        assert.equal(kind, 'standard');
        assert.equal((got as ReceivedPidfd).name, 'standard');
        assert.equal(fdTarget(pidfd), 'anon_inode:[pidfd]');
        assert.ok(peer.pid > 0 && peer.pid !== process.pid);
        // The child was reaped by now: its pidfd says so with Pid: -1.
        const childPid = Number(out.trim());
        assert.ok(childPid > 0);
        const pid = pidOf(pidfd);
        assert.ok(pid === childPid || pid === -1, `pidfd refers to ${pid}, child was ${childPid}`);

        // Our own sender, over a path and over a kept FdSocket.
        await sendPidfd(listener.path, 'setns', pidfd);
        const again = (await listener.next()) as ReceivedPidfd;
        assert.equal(again.kind, 'setns');
        assert.equal(fdTarget(again.pidfd), 'anon_inode:[pidfd]');
        assert.equal(again.peer.pid, process.pid);
        closeSync(again.pidfd);
        const sock = await FdSocket.connect(listener.path);
        await sendPidfd(sock, 'standard', pidfd);
        const third = (await listener.next()) as ReceivedPidfd;
        assert.equal(third.kind, 'standard');
        closeSync(third.pidfd);
        // crun's payload, one space: its init process, runc's 'standard'.
        const [crunLike] = await Promise.all([listener.next(), pythonPeer(listener.path, sendChildPidfd, [' '])]);
        assert.deepEqual([(crunLike as ReceivedPidfd).kind, (crunLike as ReceivedPidfd).name], ['standard', ' ']);
        closeSync((crunLike as ReceivedPidfd).pidfd);
        await sock.close();
        closeSync(pidfd);
        await listener.close();
      });
    } finally {
      t.cleanup();
    }
  });

  test('bad peers: unknown kind, no fd, two fds, early close: coded errors, nothing leaked, still serving', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const listener = await listenPidfdSocket(t.path('pidfd.sock'));
        const errs = errors(listener);
        const peer = async (body: string, args: string[] = []): Promise<FdPassError> => {
          const e = errs.next();
          await pythonPeer(listener.path, body, args);
          return e;
        };
        assert.equal((await peer(sendChildPidfd, ['exec'])).code, 'ERR_FDPASS_BAD_MESSAGE');
        assert.equal((await peer(`s.sendall(b'standard')`)).code, 'ERR_FDPASS_NO_FD');
        const two = `fd = os.pidfd_open(os.getpid())\nsocket.send_fds(s, [b'standard'], [fd, fd])`;
        assert.equal((await peer(two)).code, 'ERR_FDPASS_TOO_MANY_FDS');
        assert.equal((await peer('s.close()')).code, 'ERR_FDPASS_EOF');
        const [got] = await Promise.all([listener.next(), pythonPeer(listener.path, sendChildPidfd, ['setns'])]);
        assert.equal((got as ReceivedPidfd).kind, 'setns');
        closeSync((got as ReceivedPidfd).pidfd);
        assert.equal(errs.list.length, 4);
        await assert.rejects(sendPidfd(listener.path, 'other' as 'setns', 0), { code: 'ERR_INVALID_ARG_VALUE' });
        await listener.close();
      });
    } finally {
      t.cleanup();
    }
  });
});

// The real senders: runc >= 1.2 with --pidfd-socket (kind 'standard' for
// run), and crun with the run.oci.pidfd_receiver annotation (' ', one
// space, for the container's init process; reported as kind 'standard',
// with name ' '). runc 1.1 has no pidfd socket.
for (const rt of [RUNC_SID, CRUN]) {
  const runc = makeRunc(rt);
  after(() => runc.cleanup());
  test(`listenPidfdSocket with the real ${rt.name}: the container's init process`, needs(...rt.needs), async () => {
    const t = tempDir();
    const id = runc.id();
    const socketPath = t.path('pidfd.sock');
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      c.process.args = ['/bin/sleep', '30'];
      if (rt.kind === 'crun') c.annotations = { 'run.oci.pidfd_receiver': socketPath };
    });
    try {
      await noLeak(async () => {
        const listener = await listenPidfdSocket(socketPath);
        const errs = errors(listener);
        const args = rt.kind === 'crun' ? ['run', '-d', id] : ['run', '-d', '--pidfd-socket', socketPath, id];
        const [got] = await Promise.all([listener.next(), runc.run(args, bundle)]);
        const { kind, name, pidfd, peer } = got as ReceivedPidfd;
        assert.equal(kind, 'standard');
        assert.equal(name, rt.kind === 'crun' ? ' ' : 'standard');
        assert.equal(peer.uid, 0);
        assert.equal(fdTarget(pidfd), 'anon_inode:[pidfd]');
        const state = JSON.parse((await runc.run(['state', id])).stdout) as { pid: number };
        assert.equal(pidOf(pidfd), state.pid);
        closeSync(pidfd);
        assert.deepEqual(errs.list, []);
        await listener.close();
      });
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });
}
