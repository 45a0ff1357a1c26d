// SendQueue (src/io/send.ts): sends in order, fds on the first byte of a
// partial write, backpressure until flush, settle-on-close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, fstatSync } from 'node:fs';
import { FdSocket } from 'fdpass';
import { noLeak, repoRoot } from '../helpers.js';

type Send = typeof import('../../dist/io/send.js');
const { SendQueue } = (await import(new URL(`file://${repoRoot}/dist/io/send.js`).href)) as Send;

test('SendQueue: a send the kernel cannot take waits, in order, and goes on flush; fds travel with the first byte', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair('stream');
    const fd = a.release();
    let changes = 0;
    const q = new SendQueue(() => changes++);
    const big = Buffer.alloc(4 << 20, 1);
    const file = openSync('/dev/null', 'r');
    const order: string[] = [];
    const first = q.send(fd, big, Int32Array.of(file), true).then(() => order.push('big'));
    const second = q.send(fd, Buffer.from('z'), null, false).then(() => order.push('z'));
    assert.ok(q.length >= 1, 'the kernel could not take 4 MiB at once');
    assert.equal(changes, 1, 'the owner was told once to watch for POLLOUT');
    let got = 0;
    let fds: number[] = [];
    while (got < big.length + 1) {
      const m = await b.recv({ maxBytes: 1 << 20 });
      assert.ok(m);
      got += m.data.length;
      fds = fds.concat(m.fds);
      q.flush(fd);
    }
    await Promise.all([first, second]);
    assert.deepEqual(order, ['big', 'z']);
    assert.equal(fds.length, 1, 'one fd, with the first byte only');
    assert.equal(fstatSync(fds[0]!).ino, fstatSync(file).ino);
    assert.equal(q.bytesSent, big.length + 1);
    closeSync(fds[0]!);
    closeSync(file);
    closeSync(fd);
    await b.close();
  }));

test('SendQueue: close settles every waiting send and whenDrained with the error', async () => {
  const [a, b] = FdSocket.pair('stream');
  const fd = a.release();
  const q = new SendQueue(() => {});
  // More than the kernel takes, then two sends queued behind it.
  const waiting = [
    q.send(fd, Buffer.alloc(4 << 20), null, false),
    q.send(fd, Buffer.from('second'), null, false),
    q.send(fd, Buffer.from('third'), null, false),
  ];
  assert.equal(q.length, 3, 'all three wait');
  const drained = new Promise<Error | null>((res) => q.whenDrained(res));
  q.close(new Error('closed'));
  for (const p of waiting) await assert.rejects(p, /closed/);
  assert.equal(((await drained) as Error).message, 'closed');
  assert.equal(q.length, 0);
  closeSync(fd);
  await b.close();
});
