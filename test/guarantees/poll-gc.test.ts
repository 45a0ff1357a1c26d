// A socket whose poll stopped (no demand) and restarted after a garbage
// collection must still be woken: the poll callback lives as long as the socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FdServer, FdSocket } from 'fdpass';
import { PtyStream } from 'fdpass/runc';
import { noLeak, tempDir } from '../helpers.js';

// A callback collected by the GC never comes: the wait for it ends here (half
// a test's time limit, so a busy machine is not taken for a lost callback).
const WAKE_BOUND = 60_000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((res) => setImmediate(res));
  }
}

test('recv still wakes after the poll stopped and a GC ran', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair();
    const fd = openSync('/dev/null', 'r');
    // Poll for readability and get a message.
    const first = b.recvFd();
    await a.sendFd('x', fd);
    closeSync((await first).fd);
    // A message nobody asked for yet: readiness with no demand stops the poll.
    await a.sendFd('y', fd);
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
    await collect();
    closeSync((await b.recvFd()).fd);
    // Start polling again: a message sent later must arrive.
    const third = b.recvFd();
    await collect();
    await a.sendFd('z', fd);
    const got = await Promise.race([third, new Promise<null>((res) => setTimeout(() => res(null), WAKE_BOUND).unref())]);
    assert.ok(got, `recvFd was not woken within ${WAKE_BOUND} ms`);
    assert.equal(got.name, 'z');
    closeSync(got.fd);
    closeSync(fd);
    await a.close();
    await b.close();
  }));

test('accept still wakes after the poll stopped and a GC ran', () =>
  noLeak(async () => {
    const t = tempDir();
    const server = await FdServer.listen(t.path('s'));
    const c1 = await FdSocket.connect(server.path!);
    const s1 = await server.accept();
    await collect();
    const pending = server.accept();
    await collect();
    const c2 = await FdSocket.connect(server.path!);
    const s2 = await Promise.race([pending, new Promise<null>((res) => setTimeout(() => res(null), WAKE_BOUND).unref())]);
    assert.ok(s2, `accept was not woken within ${WAKE_BOUND} ms`);
    for (const s of [c1, s1, c2, s2]) await s.close();
    await server.close();
    t.cleanup();
  }));

test('a PtyStream still delivers after it went idle and a GC ran', () =>
  noLeak(async () => {
    // A socketpair end stands in for a pty master: PtyStream only reads,
    // writes and polls its fd.
    const [a, b] = FdSocket.pair();
    const pty = new PtyStream(b.release());
    await collect();
    const got = new Promise<string>((res) => pty.once('data', (d: Buffer) => res(String(d))));
    // _read found nothing and started polling; the callback must still be there.
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
    await collect();
    await a.send('hello');
    const data = await Promise.race([got, new Promise<null>((res) => setTimeout(() => res(null), WAKE_BOUND).unref())]);
    assert.equal(data, 'hello', `the stream was not woken within ${WAKE_BOUND} ms`);
    pty.destroy();
    await a.close();
  }));
