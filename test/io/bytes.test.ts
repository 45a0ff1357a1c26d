// readBytes and writeBytes (src/io/bytes.ts): read(2) and write(2) in
// batches on a non-blocking fd, -errno instead of exceptions, bounds checked
// before any syscall.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { FdSocket } from 'fdpass';
import { noLeak, repoRoot } from '../helpers.js';

type Bytes = typeof import('../../dist/io/bytes.js');
type Native = typeof import('../../dist/base/native.js');
const { readBytes, writeBytes } = (await import(new URL(`file://${repoRoot}/dist/io/bytes.js`).href)) as Bytes;
const { native } = (await import(new URL(`file://${repoRoot}/dist/base/native.js`).href)) as Native;
const { EAGAIN, EBADF } = constants.errno;

test('writeBytes until the fd is full (-EAGAIN, offset advanced); readBytes drains in batches, then -EAGAIN, then 0 at the end', () =>
  noLeak(async () => {
    const [a, b] = FdSocket.pair('stream');
    const w = a.release();
    const r = b.release();
    const out = { data: Buffer.alloc(8 << 20, 7), offset: 0 };
    assert.equal(writeBytes(w, out), -EAGAIN);
    assert.ok(out.offset > 0 && out.offset < out.data.length, `wrote ${out.offset} of ${out.data.length}`);
    const buf = Buffer.alloc(1 << 16);
    let got = 0;
    let n: number;
    while ((n = readBytes(r, buf)) > 0) {
      assert.ok(buf.subarray(0, n).every((x) => x === 7));
      got += n;
    }
    assert.equal(n, -EAGAIN);
    assert.equal(got, out.offset);
    native.close(w);
    assert.equal(readBytes(r, buf), 0, 'end of file once the writer closed');
    native.close(r);
    assert.equal(readBytes(r, buf), -EBADF);
    assert.equal(writeBytes(r, { data: Buffer.from('x'), offset: 0 }), -EBADF);
  }));

test('readBytes and writeBytes check their bounds and types before any syscall', () => {
  const buf = Buffer.alloc(4);
  assert.throws(() => native.readBytes(-1, buf, 2, 3), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => native.writeBytes(-1, buf, -1, 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => native.readBytes(-1, 'abcd' as unknown as Uint8Array, 0, 1), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
});
