// Exhaustion: a sender over its fds-in-flight limit gets ETOOMANYREFS as a
// coded error and goes on working once the receiver catches up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';
import { needs } from '../tools.js';

// Root (CAP_SYS_ADMIN) is exempt from the limit, so the sender runs as uid
// 65534 under a low RLIMIT_NOFILE.
const SENDER = `
const { FdSocket } = await import(${JSON.stringify(join(repoRoot, 'dist', 'index.js'))});
const { openSync, closeSync } = await import('node:fs');
const [a, b] = FdSocket.pair('seqpacket');
const fd = openSync('/dev/null', 'r');
let sent = 0, code = 'none';
for (let i = 0; i < 100; i++) {
  try { await a.send('m', Array(10).fill(fd)); sent++; }
  catch (err) { code = err.code; break; }
}
// The receiver catches up: in-flight fds drop, and sending works again.
let received = 0;
for (let i = 0; i < sent; i++) { const m = await b.recv(); m.fds.forEach((f) => closeSync(f)); received++; }
await a.send('again', [fd]);
const last = await b.recv();
last.fds.forEach((f) => closeSync(f));
console.log(JSON.stringify({ code, sent, received, last: last.data.toString(), lastFds: last.fds.length }));
await a.close(); await b.close();
`;

test('a sender over RLIMIT_NOFILE of fds in flight gets ETOOMANYREFS, then recovers', needs('root', 'prlimit'), () => {
  const r = spawnSync('prlimit', ['--nofile=64', process.execPath, '--input-type=module', '-e', SENDER], {
    uid: 65534,
    gid: 65534,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { code: string; sent: number; received: number; last: string; lastFds: number };
  assert.equal(out.code, 'ETOOMANYREFS');
  assert.ok(out.sent > 0 && out.sent < 100, `some sends went through first (${out.sent})`);
  assert.equal(out.received, out.sent);
  assert.deepEqual([out.last, out.lastFds], ['again', 1]);
});
