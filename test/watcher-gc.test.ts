// Regression: the addon holds a watcher's callback only weakly while polling
// is off; the FdSocket must keep it reachable, or after a garbage collection
// readiness events are dropped and a recv() waits forever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FdSocket } from 'fdpass';
import { delay } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('a recv() after polling was off and a GC still gets its message', async () => {
  const [a, b] = FdSocket.pair('seqpacket');
  const first = b.recv();
  setTimeout(() => void a.send('one'), 10);
  await first;
  await a.send('noise'); // readable with nobody asking: the poll is turned off
  await delay(50);
  gc();
  await delay(20);
  gc();
  assert.equal((await b.recv())!.data.toString(), 'noise');
  const second = b.recv();
  setTimeout(() => void a.send('two'), 50);
  const timeout = delay(5000).then(() => 'timed out');
  assert.equal(await Promise.race([second.then((m) => m!.data.toString()), timeout]), 'two');
  await a.close();
  await b.close();
});
