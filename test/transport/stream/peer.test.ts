// FdStream against a Python peer that writes records in uneven chunks, with
// fds on some records and large records split by the kernel: every fd must
// be read back with the bytes of the record it was sent with.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { FdServer } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { noLeak, python, repoRoot, tempDir } from '../../helpers.js';
import { isCloexec, readWhenReady, runChild } from './util.js';
import { needs } from '../../tools.js';

const writer = join(repoRoot, 'test', 'peers', 'stream_writer.py');
const COUNT = 150;

/** What an fd from the peer says it is: "record:index". */
function fdLabel(fd: number): string {
  const buf = Buffer.alloc(32);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString();
}

async function withPeer(seed: number, read: (stream: FdStream) => Promise<void>): Promise<{ records: number; fds: number; bytes: number }> {
  const t = tempDir();
  const path = t.path('peer.sock');
  const server = await FdServer.listen(path);
  const child = runChild(python, [writer, path, String(seed), String(COUNT)]);
  const stream = FdStream.fromSocket(await server.accept());
  await server.close();
  await read(stream);
  const result = await child;
  assert.equal(result.code, 0, result.stderr);
  if (!stream.closed) {
    stream.destroy();
    await once(stream, 'close');
  }
  t.cleanup();
  return JSON.parse(result.stdout) as { records: number; fds: number; bytes: number };
}

describe('FdStream with a Python peer writing uneven chunks', needs('python3'), () => {
  test('paused mode: read(8) for the header, read(size, null) for the body, each with its own fds', () =>
    noLeak(async () => {
      let fdsSeen = 0;
      let bytesSeen = 0;
      const summary = await withPeer(1, async (stream) => {
        for (let i = 0; i < COUNT; i++) {
          const header = await readWhenReady(stream, 8);
          const size = header.readUInt32LE(0);
          const nfds = header.readUInt32LE(4);
          let fds: number[];
          if (size > 0) {
            const body = await readWhenReady(stream, size, null);
            assert.equal(body.data!.length, size);
            assert.equal(body.data![0], i % 251, `record ${i}: first byte`);
            assert.equal(body.data![size - 1], i % 251, `record ${i}: last byte`);
            fds = body.fds;
          } else {
            fds = stream.takeFds();
          }
          bytesSeen += 8 + size;
          assert.equal(fds.length, nfds, `record ${i} (${size} bytes): fds`);
          fds.forEach((fd, j) => {
            assert.equal(fdLabel(fd), `${i}:${j}`);
            assert.equal(isCloexec(fd), true);
            closeSync(fd);
          });
          fdsSeen += fds.length;
        }
        let extra = 0;
        stream.on('data', (c: Buffer) => (extra += c.length));
        await once(stream, 'end');
        assert.equal(extra, 0, 'bytes after the last record');
      });
      assert.equal(summary.records, COUNT);
      assert.equal(fdsSeen, summary.fds);
      assert.equal(bytesSeen, summary.bytes);
      assert.ok(summary.fds > COUNT / 3, `the peer sent ${summary.fds} fds`);
    }));

  test("flowing mode: each 'fds' event belongs to the record of the next chunk's last byte", () =>
    noLeak(async () => {
      const groups: { lastByte: number; labels: string[] }[] = [];
      const chunks: Buffer[] = [];
      let offset = 0;
      const summary = await withPeer(2, async (stream) => {
        let labels: string[] | null = null;
        stream.on('fds', (fds: number[]) => {
          assert.equal(labels, null, "two 'fds' events without a chunk between");
          labels = fds.map((fd) => {
            const label = fdLabel(fd);
            closeSync(fd);
            return label;
          });
        });
        stream.on('data', (chunk: Buffer) => {
          if (labels) groups.push({ lastByte: offset + chunk.length - 1, labels });
          labels = null;
          offset += chunk.length;
          chunks.push(chunk);
        });
        await once(stream, 'end');
      });
      const data = Buffer.concat(chunks);
      assert.equal(data.length, summary.bytes);
      // Parse the records and match every group of fds to one.
      const records: { start: number; end: number; nfds: number; matched: boolean }[] = [];
      for (let pos = 0; pos < data.length;) {
        const size = data.readUInt32LE(pos);
        const nfds = data.readUInt32LE(pos + 4);
        records.push({ start: pos, end: pos + 8 + size, nfds, matched: false });
        pos += 8 + size;
      }
      assert.equal(records.length, COUNT);
      for (const g of groups) {
        const i = records.findIndex((r) => r.start <= g.lastByte && g.lastByte < r.end);
        const r = records[i]!;
        assert.equal(r.matched, false, `record ${i} got fds twice`);
        r.matched = true;
        assert.deepEqual(
          g.labels,
          Array.from({ length: r.nfds }, (_, j) => `${i}:${j}`),
          `record ${i}`,
        );
      }
      const missing = records.filter((r) => r.nfds > 0 && !r.matched).length;
      assert.equal(missing, 0, `${missing} records lost their fds`);
      assert.equal(
        groups.reduce((n, g) => n + g.labels.length, 0),
        summary.fds,
      );
    }));
});
