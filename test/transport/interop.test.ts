// Interop with real peers: CPython's socket.send_fds/recv_fds and a C peer
// that speaks runc's SendFd/RecvFd format, both ways, async and *Sync.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { FdServer, FdSocket, recvFdSync, sendFdSync } from 'fdpass';
import { buildPeer, noLeak, tempDir } from '../helpers.js';
import { needs } from '../tools.js';

function run(
  cmd: string,
  args: string[],
  options: { stdio?: ('pipe' | 'inherit' | number)[] } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

const PY_SEND = `
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[3:]]
socket.send_fds(s, [sys.argv[2].encode()], fds)
print("sent", len(fds))
`;

const PY_RECV = `
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
msg, fds, flags, addr = socket.recv_fds(s, 4096, 253)
out = [msg.decode()]
for fd in fds:
    out.append(os.pread(fd, 100, 0).decode())
    os.close(fd)
print("|".join(out), flags)
`;

describe('CPython socket.send_fds / recv_fds', needs('python3'), () => {
  test('Python sends, fdpass receives (runc format and several fds)', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('a'), 'AAA');
      writeFileSync(t.path('b'), 'BBB');
      const server = await FdServer.listen(t.path('py.sock'));
      const [res, conn] = await Promise.all([run('python3', ['-c', PY_SEND, t.path('py.sock'), 'console', t.path('a')]), server.accept()]);
      assert.equal(res.code, 0, res.err);
      const got = await conn.recvFd();
      assert.equal(got.name, 'console');
      assert.equal(readFileSync(got.fd, 'utf8'), 'AAA');
      closeSync(got.fd);
      await conn.close();

      const [res2, conn2] = await Promise.all([
        run('python3', ['-c', PY_SEND, t.path('py.sock'), 'two', t.path('a'), t.path('b')]),
        server.accept(),
      ]);
      assert.equal(res2.code, 0, res2.err);
      const m = await conn2.recv();
      assert.equal(m!.data.toString(), 'two');
      assert.deepEqual(
        m!.fds.map((fd) => readFileSync(fd, 'utf8')),
        ['AAA', 'BBB'],
      );
      m!.fds.forEach((fd) => closeSync(fd));
      await conn2.close();
      await server.close();
      t.cleanup();
    }));

  test('fdpass sends, Python receives', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('c'), 'CCC');
      const server = await FdServer.listen(t.path('py2.sock'));
      const child = run('python3', ['-c', PY_RECV, t.path('py2.sock')]);
      const conn = await server.accept();
      const fd = openSync(t.path('c'), 'r');
      await conn.send('hello', [fd, fd]);
      closeSync(fd);
      const res = await child;
      assert.equal(res.code, 0, res.err);
      assert.equal(res.out.trim(), 'hello|CCC|CCC 0');
      await conn.close();
      await server.close();
      t.cleanup();
    }));
});

describe('C peer in runc format', () => {
  const peer = buildPeer('runc_peer');

  test('C sends, fdpass recvFd receives', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('f'), 'from C');
      const server = await FdServer.listen(t.path('c.sock'));
      const [res, conn] = await Promise.all([run(peer, ['send', t.path('c.sock'), '/dev/pts/ptmx', t.path('f')]), server.accept()]);
      assert.equal(res.code, 0, res.err);
      const got = await conn.recvFd();
      assert.deepEqual([got.name, readFileSync(got.fd, 'utf8')], ['/dev/pts/ptmx', 'from C']);
      closeSync(got.fd);
      await conn.close();
      await server.close();
      t.cleanup();
    }));

  test('fdpass sendFd, C receives', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('g'), 'to C');
      const server = await FdServer.listen(t.path('c2.sock'));
      const child = run(peer, ['recv', t.path('c2.sock')]);
      const conn = await server.accept();
      const fd = openSync(t.path('g'), 'r');
      await conn.sendFd('orphan-pts-master', fd);
      closeSync(fd);
      const res = await child;
      assert.equal(res.code, 0, res.err);
      assert.equal(res.out, 'orphan-pts-master\tto C');
      await conn.close();
      await server.close();
      t.cleanup();
    }));

  test('sendFdSync/recvFdSync on raw blocking fds inherited by the C peer', () =>
    noLeak(async () => {
      const t = tempDir();
      writeFileSync(t.path('h'), 'sync');
      // A blocking socketpair from Python's side is not needed: use ours and
      // give the child one end as fd 3.
      const [a, b] = FdSocket.pair();
      const childEnd = b.release();
      // The C peer receives on fd 3 (blocking in its recvmsg).
      const child = spawn(peer, ['recvfd', '3'], { stdio: ['ignore', 'pipe', 'pipe', childEnd] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const fd = openSync(t.path('h'), 'r');
      sendFdSync(a, 'sync-name', fd);
      closeSync(fd);
      await new Promise((res) => child.on('close', res));
      assert.equal(out, 'sync-name\tsync');

      // And the other way: the C peer sends on fd 3, we block in recvFdSync
      // on a raw fd number.
      const [c, d] = FdSocket.pair();
      const raw = c.release();
      const r = spawnSync(peer, ['sendfd', '3', 'from-c', t.path('h')], { stdio: ['ignore', 'pipe', 'pipe', d.fd] });
      assert.equal(r.status, 0, r.stderr?.toString());
      const got = recvFdSync(raw);
      assert.deepEqual([got.name, readFileSync(got.fd, 'utf8')], ['from-c', 'sync']);
      closeSync(got.fd);
      closeSync(raw);
      closeSync(childEnd);
      await Promise.all([a.close(), d.close()]);
      t.cleanup();
    }));
});
