// Runs inside a project that installed fdpass from `npm pack` (scripts off),
// on whatever Node runs it: x64, or arm64 under qemu-aarch64. Plain JS and
// node:assert only. Prints one JSON line: which addon loaded, what passed.
//   node platform-smoke.mjs DIR     (DIR: a scratch folder for a socket file)
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FdServer, FdSocket, closeFds, recvFdSync, sendFdSync } from 'fdpass';

const dir = process.argv[2];
const openFds = () => readdirSync('/proc/self/fd').length;
const before = openFds();
const passed = [];
const file = join(dir, 'data.txt');
writeFileSync(file, 'through SCM_RIGHTS\n');
const readAll = (fd) => {
  const buf = Buffer.alloc(64);
  return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString();
};

{
  // The quick start: a listener on a path, a client, one fd with a name.
  const path = join(dir, 'quick.sock');
  const server = await FdServer.listen(path);
  const client = await FdSocket.connect(path);
  const conn = await server.accept();
  const fd = openSync(file, 'r');
  await client.sendFd('the-file', fd);
  closeSync(fd);
  const got = await conn.recvFd();
  assert.equal(got.name, 'the-file');
  assert.equal(readFileSync(got.fd, 'utf8'), 'through SCM_RIGHTS\n');
  closeSync(got.fd);
  assert.equal(conn.peer.pid, process.pid);
  await Promise.all([client.close(), conn.close(), server.close()]);
  passed.push('quick start');
}

{
  // A socketpair, several fds in one message, the 'message' event, end of file.
  const [a, b] = FdSocket.pair();
  const fds = [openSync(file, 'r'), openSync(file, 'r'), openSync(file, 'r')];
  const got = new Promise((resolve) => b.once('message', resolve));
  await a.send('three', fds);
  closeFds(fds);
  const m = await got;
  assert.equal(m.data.toString(), 'three');
  assert.equal(m.fds.length, 3);
  for (const fd of m.fds) assert.equal(readAll(fd), 'through SCM_RIGHTS\n');
  closeFds(m.fds);
  await a.end();
  assert.equal(await b.recv(), null);
  await Promise.all([a.close(), b.close()]);
  passed.push('pair send/recv');
}

{
  // Seqpacket, and for await over the messages.
  const [a, b] = FdSocket.pair('seqpacket');
  for (let i = 0; i < 5; i++) await a.send(`m${i}`, [a]);
  await a.close();
  const names = [];
  for await (const m of b) {
    names.push(m.data.toString());
    closeFds(m.fds);
  }
  assert.deepEqual(names, ['m0', 'm1', 'm2', 'm3', 'm4']);
  await b.close();
  passed.push('seqpacket for await');
}

{
  // The blocking helpers (runc's SendFd/RecvFd).
  const [a, b] = FdSocket.pair();
  const fd = openSync(file, 'r');
  sendFdSync(a, 'sync', fd);
  closeSync(fd);
  const got = recvFdSync(b);
  assert.equal(got.name, 'sync');
  assert.equal(readAll(got.fd), 'through SCM_RIGHTS\n');
  closeSync(got.fd);
  await Promise.all([a.close(), b.close()]);
  passed.push('sendFdSync/recvFdSync');
}

{
  // Errors look like Node's: a dead peer gives EPIPE.
  const [a, b] = FdSocket.pair();
  await b.close();
  await assert.rejects(a.send('x', []), { code: 'EPIPE', syscall: 'sendmsg' });
  await a.close();
  passed.push('EPIPE');
}

for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
assert.equal(openFds(), before, 'fds leaked');
const addon = readFileSync('/proc/self/maps', 'utf8')
  .split('\n')
  .find((l) => l.endsWith('fdpass.node'));
console.log(JSON.stringify({ arch: process.arch, addon: addon?.slice(addon.indexOf('/')), passed }));
