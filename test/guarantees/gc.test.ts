// The addon holds a watcher's callback weakly while it is not polling. A
// garbage collection between creating a socket and waiting on it must not
// leave readiness unanswered (it did: the callback was collected and the
// loop spun on an fd nobody read).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FdServer, FdSocket } from 'fdpass';
import { noLeak, tempDir } from '../helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  gc();
  await new Promise((res) => setImmediate(res));
  gc();
}

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    // A collected callback never answers: the bound, half a test's time limit, says so.
    timer = setTimeout(() => reject(new Error(`${what}: no answer within 60 s of a garbage collection`)), 60_000);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

test('FdServer.accept and FdSocket.recv still answer after a garbage collection', () =>
  noLeak(async () => {
    const t = tempDir();
    const server = await FdServer.listen(t.path('gc.sock'));
    const [a, b] = FdSocket.pair();
    await collect();
    // Wait first (the sockets start polling), then make them ready.
    const accepted = within(server.accept(), 'accept');
    const received = within(b.recv(), 'recv');
    const client = await FdSocket.connect(t.path('gc.sock'));
    await a.send('after gc');
    const conn = await accepted;
    const m = await received;
    assert.equal(m!.data.toString(), 'after gc');
    await Promise.all([a.close(), b.close(), client.close(), conn.close(), server.close()]);
    t.cleanup();
  }));
