// fdpass/shm: memfds created, sealed, mapped and unmapped; fds received
// from a real CPython peer (os.memfd_create, mmap) mapped here and the other
// way round; hostile fds (unsealed, truncated after sending, empty, huge,
// sockets and pipes); fds and mappings counted before and after, workers
// included (one terminated while it holds a mapping).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { FdSocket } from 'fdpass';
import { SharedMemory } from 'fdpass/shm';
import { collectGarbage, isOpen, killAtEnd, openFds, repoRoot, testDir } from '../../helpers.js';
import { exited } from '../../lines.js';
import { needs } from '../../tools.js';

const peer = join(repoRoot, 'test', 'protocols', 'shm', 'peer.py');
const shmUrl = pathToFileURL(join(repoRoot, 'dist', 'protocols', 'shm', 'index.js')).href;
const fdpassUrl = pathToFileURL(join(repoRoot, 'dist', 'index.js')).href;

/** Mappings of this process whose file is the memfd called `name` (/proc/self/maps). */
function mappings(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(`/memfd:${name} (deleted)`)).length;
}

/** The fds and memfd mappings of this process, as a comparable snapshot. */
function snapshot(): { fds: number[]; maps: number } {
  const maps = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:')).length;
  return { fds: openFds(), maps };
}

function sameAs(before: { fds: number[]; maps: number }): void {
  const after = snapshot();
  assert.deepEqual(after.fds, before.fds, 'open fds');
  assert.equal(after.maps, before.maps, 'memfd mappings');
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  assert.fail('did not throw');
}

/** A python3 peer running `peer.py args`, with one end of a socket pair as its fd 3; our end. */
function python(
  t: { after: (fn: () => void) => void },
  args: string[],
): { sock: FdSocket; child: ChildProcess; out: () => string; printed: () => Promise<string> } {
  const [ours, theirs] = FdSocket.pair();
  const child = killAtEnd(t, spawn('python3', [peer, ...args], { stdio: ['ignore', 'pipe', 'pipe', theirs.fd] }));
  void theirs.close();
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  t.after(() => void ours.close());
  // The peer prints, then answers on the socket: the answer can arrive
  // before the line does (two pipes, no order between them). printed()
  // waits for a whole line on stdout, or for the child's end.
  const printed = (): Promise<string> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (!out.includes('\n') && child.exitCode === null && child.signalCode === null) return;
        child.stdout!.off('data', check);
        child.off('exit', check);
        resolve(out + err);
      };
      child.stdout!.on('data', check);
      child.on('exit', check);
      check();
    });
  return { sock: ours, child, out: () => out + err, printed };
}

/** The child's exit code or signal, once its stdio pipes are closed too ('close', after 'exit'). */
function closed(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null && child.stdout?.closed !== false) return exited(child);
  return new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
}

async function reply(sock: FdSocket): Promise<string> {
  const m = await sock.recv();
  assert.ok(m, 'the peer hung up');
  return m.data.toString();
}

describe('SharedMemory.create', () => {
  test('a memfd mapped writable: writes show in the file; seals; close detaches and unmaps', () => {
    const before = snapshot();
    const shm = SharedMemory.create(10_000, { name: 'create-test' });
    assert.equal(shm.size, 10_000);
    assert.equal(shm.writable, true);
    assert.equal(shm.buffer.byteLength, 10_000);
    assert.match(readFileSync(`/proc/self/fdinfo/${shm.fd}`, 'latin1'), /^flags:\s*[0-7]*2[0-7]{6}$/m, 'close-on-exec');
    const view = new Uint8Array(shm.buffer);
    assert.ok(
      view.every((b) => b === 0),
      'zero-filled',
    );
    view.set(Buffer.from('hello'), 9_995);
    assert.equal(readFileSync(`/proc/self/fd/${shm.fd}`).subarray(9_995).toString(), 'hello');
    assert.deepEqual(shm.seals, []);
    shm.seal(['shrink', 'grow']);
    assert.deepEqual(shm.seals, ['shrink', 'grow']);
    assert.equal(
      codeOf(() => shm.seal('write')),
      'EBUSY',
      'our own writable mapping blocks F_SEAL_WRITE',
    );
    shm.seal(['future-write', 'seal']);
    assert.deepEqual(shm.seals, ['seal', 'shrink', 'grow', 'future-write']);
    assert.equal(
      codeOf(() => shm.seal('grow')),
      'EPERM',
    );
    assert.equal(mappings('create-test'), 1);
    const fd = shm.fd;
    shm.close();
    assert.equal(shm.closed, true);
    assert.equal(shm.fd, -1);
    assert.equal(shm.buffer.byteLength, 0, 'detached');
    assert.equal(view.length, 0, 'views of a detached buffer are empty');
    assert.equal(view[9_995], undefined);
    assert.equal(isOpen(fd), false);
    assert.equal(mappings('create-test'), 0);
    shm.close(); // idempotent
    assert.equal(
      codeOf(() => shm.seals),
      'ERR_FDPASS_CLOSED',
    );
    sameAs(before);
  });

  test('using: disposed at the end of the block', () => {
    const before = snapshot();
    let buffer: ArrayBuffer;
    {
      using shm = SharedMemory.create(4096, { seals: ['shrink'] });
      buffer = shm.buffer;
      assert.deepEqual(shm.seals, ['shrink']);
    }
    assert.equal(buffer.byteLength, 0);
    sameAs(before);
  });

  test('size 0: an empty buffer, and a fd that still works', () => {
    const before = snapshot();
    const shm = SharedMemory.create(0, { seals: ['shrink'] });
    assert.equal(shm.buffer.byteLength, 0);
    const copy = openSync(`/proc/self/fd/${shm.fd}`, 'r');
    const other = SharedMemory.fromFd(copy);
    assert.equal(other.size, 0);
    other.close();
    shm.close();
    sameAs(before);
  });

  test('bad arguments throw before anything is created', () => {
    const before = snapshot();
    assert.equal(
      codeOf(() => SharedMemory.create(-1)),
      'ERR_OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => SharedMemory.create(1.5)),
      'ERR_OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => SharedMemory.create(2 ** 53)),
      'ERR_OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => SharedMemory.create('1' as unknown as number)),
      'ERR_INVALID_ARG_TYPE',
    );
    assert.equal(
      codeOf(() => SharedMemory.create(1, { name: 'x'.repeat(250) })),
      'ERR_OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => SharedMemory.create(1, { seals: ['shrinc' as 'shrink'] })),
      'ERR_INVALID_ARG_TYPE',
    );
    assert.equal(
      codeOf(() => SharedMemory.fromFd(-1)),
      'ERR_OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => SharedMemory.fromFd(0, { writable: 1 as unknown as boolean })),
      'ERR_INVALID_ARG_TYPE',
    );
    sameAs(before);
  });

  test('huge sizes: beyond the address space is ENOMEM with nothing left open', () => {
    const before = snapshot();
    // 2^50 bytes: the memfd takes the size (sparse), mmap cannot place it.
    const err = (() => {
      try {
        SharedMemory.create(2 ** 50);
      } catch (e) {
        return e as { code: string; syscall: string };
      }
      return null;
    })();
    assert.equal(err?.code, 'ENOMEM');
    assert.equal(err?.syscall, 'mmap');
    sameAs(before);
  });

  test('a mapping forgotten without close() is unmapped, and its fd closed, when its buffer is collected', async () => {
    const before = snapshot();
    (() => {
      for (let i = 0; i < 20; i++) new Uint8Array(SharedMemory.create(65536, { name: 'forgotten' }).buffer)[0] = 1;
    })();
    assert.equal(mappings('forgotten'), 20);
    for (let i = 0; i < 10 && mappings('forgotten') > 0; i++) await collectGarbage();
    assert.equal(mappings('forgotten'), 0);
    sameAs(before);
  });

  test('the buffer keeps the mapping after the SharedMemory object is gone', async () => {
    const before = snapshot();
    let buffer: ArrayBuffer | null = (() => SharedMemory.create(4096, { name: 'kept-buffer' }).buffer)();
    new Uint8Array(buffer)[4095] = 42;
    await collectGarbage();
    assert.equal(mappings('kept-buffer'), 1);
    assert.equal(new Uint8Array(buffer)[4095], 42);
    assert.notDeepEqual(snapshot().fds, before.fds, 'the fd lives with the buffer');
    buffer = null;
    for (let i = 0; i < 10 && mappings('kept-buffer') > 0; i++) await collectGarbage();
    assert.equal(mappings('kept-buffer'), 0);
    sameAs(before);
  });
});

describe('SharedMemory.fromFd', () => {
  test('refuses an unsealed memfd (the fd stays with the caller); allowUnsealed maps it', () => {
    const before = snapshot();
    const shm = SharedMemory.create(4096, { name: 'unsealed' });
    new Uint8Array(shm.buffer).set(Buffer.from('abc'));
    const fd = openSync(`/proc/self/fd/${shm.fd}`, 'r+');
    const err = (() => {
      try {
        SharedMemory.fromFd(fd);
      } catch (e) {
        return e as { code: string; message: string };
      }
    })();
    assert.equal(err?.code, 'ERR_FDPASS_UNSEALED');
    assert.match(err!.message, /F_SEAL_SHRINK/);
    assert.equal(isOpen(fd), true, 'left with the caller');
    const mapped = SharedMemory.fromFd(fd, { allowUnsealed: true, writable: true });
    assert.equal(Buffer.from(mapped.buffer, 0, 3).toString(), 'abc');
    new Uint8Array(mapped.buffer)[3] = 0x64;
    assert.equal(new Uint8Array(shm.buffer)[3], 0x64, 'a shared mapping writes through');
    mapped.close();
    assert.equal(isOpen(fd), false, 'owned and closed by the SharedMemory');
    shm.close();
    sameAs(before);
  });

  test('read-only (default): sees the file, and what it writes stays private', () => {
    const before = snapshot();
    const shm = SharedMemory.create(8192, { seals: ['shrink'] });
    const ro = SharedMemory.fromFd(openSync(`/proc/self/fd/${shm.fd}`, 'r'));
    const w = new Uint8Array(shm.buffer);
    const r = new Uint8Array(ro.buffer);
    assert.equal(ro.writable, false);
    w[5000] = 7;
    assert.equal(r[5000], 7, 'a later write by the owner shows');
    r[10] = 1;
    assert.equal(w[10], 0, 'our write does not reach the file');
    ro.close();
    shm.close();
    sameAs(before);
  });

  test('a regular file maps with allowUnsealed (it takes no seals)', (t) => {
    const before = snapshot();
    const dir = testDir(t, 'fdpass-shm-').dir;
    writeFileSync(join(dir, 'f'), 'file contents');
    const fd = openSync(join(dir, 'f'), 'r');
    assert.equal(
      codeOf(() => SharedMemory.fromFd(fd)),
      'ERR_FDPASS_UNSEALED',
    );
    const shm = SharedMemory.fromFd(fd, { allowUnsealed: true });
    assert.deepEqual(shm.seals, []);
    assert.equal(Buffer.from(shm.buffer).toString(), 'file contents');
    shm.close();
    sameAs(before);
  });

  test('refuses what cannot be mapped: a socket, a pipe, a device, a closed fd', (t) => {
    const before = snapshot();
    const [a, b] = FdSocket.pair();
    const err = (() => {
      try {
        SharedMemory.fromFd(a.fd, { allowUnsealed: true });
      } catch (e) {
        return e as { code: string; message: string };
      }
    })();
    assert.equal(err?.code, 'ERR_FDPASS_BAD_FD');
    assert.match(err!.message, /is a socket/);
    assert.equal(isOpen(a.fd), true);
    void a.close();
    void b.close();
    const dir = testDir(t, 'fdpass-shm-').dir;
    assert.equal(spawnSync('mkfifo', [join(dir, 'fifo')]).status, 0);
    const fifo = openSync(join(dir, 'fifo'), 'r+'); // O_RDWR: a FIFO opens without a peer
    assert.match(String(codeOf(() => SharedMemory.fromFd(fifo, { allowUnsealed: true }))), /ERR_FDPASS_BAD_FD/);
    assert.throws(() => SharedMemory.fromFd(fifo, { allowUnsealed: true }), /is a pipe/);
    closeSync(fifo);
    const tty = openSync('/dev/null', 'r');
    assert.throws(() => SharedMemory.fromFd(tty, { allowUnsealed: true }), /is a character device/);
    closeSync(tty);
    assert.equal(
      codeOf(() => SharedMemory.fromFd(tty)),
      'EBADF',
    );
    sameAs(before);
  });

  test('writable needs an fd open for writing (EACCES) and a file not sealed against writes (EPERM)', () => {
    const before = snapshot();
    const shm = SharedMemory.create(4096, { seals: ['shrink'] });
    const ro = openSync(`/proc/self/fd/${shm.fd}`, 'r');
    assert.equal(
      codeOf(() => SharedMemory.fromFd(ro, { writable: true })),
      'EACCES',
    );
    assert.equal(isOpen(ro), true);
    closeSync(ro);
    shm.seal('future-write');
    const rw = openSync(`/proc/self/fd/${shm.fd}`, 'r+');
    assert.equal(
      codeOf(() => SharedMemory.fromFd(rw, { writable: true })),
      'EPERM',
    );
    SharedMemory.fromFd(rw).close(); // read-only still maps
    shm.close();
    sameAs(before);
  });
});

describe('SharedMemory.prototype.remap', () => {
  /** A sealed memfd of `size` bytes whose bytes are all `fill`, and a read-only fd of it for the receiver. */
  function file(size: number, fill: number, name = 'remap'): { shm: SharedMemory; fd: number } {
    const shm = SharedMemory.create(size, { name, seals: ['shrink', 'grow'] });
    new Uint8Array(shm.buffer).fill(fill);
    return { shm, fd: openSync(`/proc/self/fd/${shm.fd}`, 'r') };
  }

  test('maps the next file into the same buffer: views show it, the old fd is closed, the new one owned', () => {
    const before = snapshot();
    const a = file(3 << 20, 1);
    const b = file(3 << 20, 2);
    const m = SharedMemory.fromFd(a.fd);
    const buffer = m.buffer;
    const view = new Uint8Array(buffer);
    view[0] = 9; // a private copy of one page, dropped with the old mapping
    m.remap(b.fd);
    assert.equal(m.buffer, buffer, 'the same ArrayBuffer');
    assert.equal(buffer.byteLength, 3 << 20);
    assert.deepEqual([view[0], view[1 << 20], view[(3 << 20) - 1]], [2, 2, 2], 'the new file, the private page gone');
    assert.equal(m.fd, b.fd);
    assert.equal(isOpen(a.fd), false, 'the old fd closed');
    assert.equal(isOpen(b.fd), true, 'the new fd owned');
    assert.equal(mappings('remap'), 3, 'two writers and one reader, not two');
    new Uint8Array(b.shm.buffer)[5] = 7;
    assert.equal(view[5], 7, "the new file's later writes show");
    m.close();
    assert.equal(buffer.byteLength, 0, 'detached by close');
    assert.equal(isOpen(b.fd), false);
    a.shm.close();
    b.shm.close();
    sameAs(before);
  });

  test('a shared mapping stays shared: writes reach the new file', () => {
    const before = snapshot();
    const a = SharedMemory.create(4096, { seals: ['shrink'] });
    const b = SharedMemory.create(4096, { seals: ['shrink'] });
    const m = SharedMemory.fromFd(openSync(`/proc/self/fd/${a.fd}`, 'r+'), { writable: true });
    m.remap(openSync(`/proc/self/fd/${b.fd}`, 'r+'));
    new Uint8Array(m.buffer)[1] = 5;
    assert.deepEqual([new Uint8Array(a.buffer)[1], new Uint8Array(b.buffer)[1]], [0, 5]);
    m.close();
    a.close();
    b.close();
    sameAs(before);
  });

  test('refused with the old file still mapped and the fd left with the caller: another size, unsealed, not a file, read-only for a shared mapping, closed', () => {
    const before = snapshot();
    const a = file(8192, 1);
    const m = SharedMemory.fromFd(a.fd);
    const view = new Uint8Array(m.buffer);
    const other = file(4096, 2);
    const unsealed = SharedMemory.create(8192);
    const unsealedFd = openSync(`/proc/self/fd/${unsealed.fd}`, 'r');
    const [s1, s2] = FdSocket.pair();
    assert.throws(() => m.remap(other.fd), { code: 'ERR_FDPASS_BAD_FD', message: /holds 4096 bytes.*8192/ });
    assert.equal(
      codeOf(() => m.remap(unsealedFd)),
      'ERR_FDPASS_UNSEALED',
    );
    assert.equal(
      codeOf(() => m.remap(s1.fd)),
      'ERR_FDPASS_BAD_FD',
    );
    assert.throws(() => m.remap(-1), RangeError);
    assert.throws(() => m.remap(a.fd + 0.5), RangeError);
    assert.throws(() => m.remap(unsealedFd, { allowUnsealed: 'yes' } as never), TypeError);
    for (const fd of [other.fd, unsealedFd, s1.fd]) assert.equal(isOpen(fd), true, `fd ${fd} left with the caller`);
    assert.equal(view[8191], 1, 'the old file still mapped');
    assert.equal(m.fd, a.fd);
    m.remap(unsealedFd, { allowUnsealed: true });
    assert.equal(view[8191], 0);
    const w = SharedMemory.create(4096, { seals: ['shrink'] });
    const shared = SharedMemory.fromFd(openSync(`/proc/self/fd/${w.fd}`, 'r+'), { writable: true });
    const ro = openSync(`/proc/self/fd/${w.fd}`, 'r');
    assert.equal(
      codeOf(() => shared.remap(ro)),
      'EACCES',
      'a shared writable mapping needs an fd open for writing',
    );
    assert.equal(isOpen(ro), true);
    m.close();
    assert.throws(() => m.remap(ro), { code: 'ERR_FDPASS_CLOSED' });
    closeSync(ro);
    shared.close();
    w.close();
    closeSync(other.fd);
    void s1.close();
    void s2.close();
    a.shm.close();
    other.shm.close();
    unsealed.close();
    sameAs(before);
  });

  test('64 MiB handed over 20 times: one buffer, no new external memory, nothing left open', () => {
    const before = snapshot();
    const size = 64 << 20;
    const first = file(size, 0, 'remap64');
    const m = SharedMemory.fromFd(first.fd);
    const view = new Uint8Array(m.buffer);
    const external = process.memoryUsage().external;
    for (let i = 1; i <= 20; i++) {
      const next = file(size, 0, 'remap64');
      new Uint8Array(next.shm.buffer)[size - 1] = i;
      m.remap(next.fd);
      next.shm.close(); // the receiver's mapping keeps the file
      assert.equal(view[size - 1], i);
    }
    assert.ok(process.memoryUsage().external - external < size, 'no 64 MiB buffer made per handoff');
    assert.equal(mappings('remap64'), 2, "the first writer's and the receiver's");
    m.close();
    first.shm.close();
    sameAs(before);
  });
});

describe('against CPython (os.memfd_create, mmap) over a Unix socket', needs('python3'), () => {
  test('CPython creates and seals a memfd; we map it read-only; its ftruncate is refused by the seal', async (t) => {
    const before = snapshot();
    const py = python(t, ['make', '4096', '1']);
    const { fd } = await py.sock.recvFd();
    const ro = SharedMemory.fromFd(fd);
    assert.deepEqual(ro.seals, ['shrink', 'grow']);
    assert.equal(ro.size, 4096);
    assert.equal(Buffer.from(ro.buffer, 0, 11).toString(), 'from python');
    ro.close();
    await py.sock.send('t');
    assert.equal(await reply(py.sock), 'E', 'the seal refuses ftruncate');
    await py.sock.send('q');
    assert.equal(await closed(py.child), 0, py.out());
    await py.sock.close();
    sameAs(before);
  });

  test('CPython maps, reads and writes a memfd we created and sent', async (t) => {
    const before = snapshot();
    const shm = SharedMemory.create(4096, { name: 'to-python', seals: ['shrink', 'grow'] });
    Buffer.from(shm.buffer).write('hello from JS\0');
    const py = python(t, ['take']);
    await py.sock.sendFd('m', shm.fd);
    assert.equal(await reply(py.sock), 'w');
    assert.equal(await py.printed(), '4096 6 hello from JS\n', 'size, seals F_SEAL_SHRINK|F_SEAL_GROW, contents');
    assert.equal(Buffer.from(shm.buffer, 200, 14).toString(), 'hi from python');
    await py.sock.send('q');
    assert.equal(await closed(py.child), 0, py.out());
    shm.close();
    await py.sock.close();
    sameAs(before);
  });

  test('we write through a writable mapping of a CPython memfd; CPython reads it', async (t) => {
    const before = snapshot();
    const py = python(t, ['make', '4096', '1']);
    const { fd } = await py.sock.recvFd();
    const shm = SharedMemory.fromFd(fd, { writable: true });
    Buffer.from(shm.buffer).write('0123456789', 100);
    await py.sock.send('p');
    assert.equal(await reply(py.sock), 'P');
    assert.equal(await py.printed(), '0123456789\n');
    shm.close();
    await py.sock.send('q');
    assert.equal(await closed(py.child), 0, py.out());
    await py.sock.close();
    sameAs(before);
  });

  test('an unsealed memfd from CPython is refused, the fd left with us', async (t) => {
    const py = python(t, ['make', '4096', '0']);
    const { fd } = await py.sock.recvFd();
    assert.equal(
      codeOf(() => SharedMemory.fromFd(fd)),
      'ERR_FDPASS_UNSEALED',
    );
    assert.equal(isOpen(fd), true);
    closeSync(fd);
    await py.sock.send('q');
    assert.equal(await closed(py.child), 0, py.out());
  });

  test('size 0 and a huge size (2^62 bytes, sparse) from CPython', async (t) => {
    const before = snapshot();
    const empty = python(t, ['make', '0', '1']);
    const { fd } = await empty.sock.recvFd();
    const shm = SharedMemory.fromFd(fd);
    assert.equal(shm.size, 0);
    assert.equal(shm.buffer.byteLength, 0);
    shm.close();
    await empty.sock.send('q');
    const huge = python(t, ['make', String(2 ** 62), '1']);
    const big = await huge.sock.recvFd();
    assert.equal(
      codeOf(() => SharedMemory.fromFd(big.fd)),
      'ENOMEM',
    );
    assert.equal(isOpen(big.fd), true, 'left with the caller');
    closeSync(big.fd);
    await huge.sock.send('q');
    assert.equal(await closed(empty.child), 0, empty.out());
    assert.equal(await closed(huge.child), 0, huge.out());
    await empty.sock.close();
    await huge.sock.close();
    sameAs(before);
  });

  test('a peer truncates after sending: with allowUnsealed, touching a lost page is SIGBUS (in a child process)', async (t) => {
    // The documented behaviour of allowUnsealed with an untrusted peer: the
    // process dies. A child process runs it, never this test runner.
    const script = `
      import { FdSocket } from ${JSON.stringify(fdpassUrl)};
      import { SharedMemory } from ${JSON.stringify(shmUrl)};
      const sock = FdSocket.fromFd(3);
      const { fd } = await sock.recvFd();
      const shm = SharedMemory.fromFd(fd, { allowUnsealed: true });
      const view = new Uint8Array(shm.buffer);
      console.log('mapped', view[0]);
      await sock.send('t');
      console.log('peer:', (await sock.recv()).data.toString());
      console.log('touching', view[5000]);
      console.log('survived');
    `;
    const [ours, theirs] = FdSocket.pair();
    const child = killAtEnd(
      t,
      spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe', theirs.fd] }),
    );
    const py = killAtEnd(t, spawn('python3', [peer, 'make', '8192', '0'], { stdio: ['ignore', 'pipe', 'pipe', ours.fd] }));
    await ours.close();
    await theirs.close();
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.on('close', (c, s) => res([c, s])));
    if (process.env.FDPASS_ASAN === '1') {
      // npm run test:asan: ASan catches the SIGBUS, reports it and exits.
      assert.match(out, /^mapped 102\npeer: T\n[^]*AddressSanitizer: BUS/, `exit ${code}, ${signal}`);
    } else {
      assert.equal(signal, 'SIGBUS', `exit ${code}: ${out}`);
      assert.equal(out, 'mapped 102\npeer: T\n');
    }
    assert.equal(await closed(py), 0, 'the peer sees the end of the socket and exits');
  });
});

describe('workers', () => {
  const workerCode = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { SharedMemory } = require(${JSON.stringify(join(repoRoot, 'dist-cjs', 'protocols', 'shm', 'index.js'))});
    const shm = SharedMemory.fromFd(workerData.fd, { writable: true });
    const own = SharedMemory.create(1 << 20, { name: 'worker-own' });
    new Uint8Array(own.buffer).fill(1);
    Buffer.from(shm.buffer).write('from a worker');
    if (workerData.close) { shm.close(); own.close(); }
    parentPort.postMessage('holding');
    if (!workerData.close) setInterval(() => {}, 1000);
  `;

  async function run(close: boolean, terminate: boolean): Promise<void> {
    const before = snapshot();
    const shm = SharedMemory.create(4096, { name: 'worker-shared', seals: ['shrink'] });
    const fd = openSync(`/proc/self/fd/${shm.fd}`, 'r+');
    const w = new Worker(workerCode, { eval: true, workerData: { fd, close } });
    await new Promise<void>((res, rej) => {
      w.once('message', () => res());
      w.once('error', rej);
    });
    assert.equal(mappings('worker-shared'), close ? 1 : 2);
    assert.equal(mappings('worker-own'), close ? 0 : 1);
    assert.equal(Buffer.from(shm.buffer, 0, 13).toString(), 'from a worker');
    if (terminate) await w.terminate();
    else await new Promise((res) => w.once('exit', res));
    shm.close();
    sameAs(before);
  }

  test('a worker maps a received fd and creates its own; closes both', () => run(true, false));

  test('a worker terminated while it holds two mappings: the end of its environment unmaps them and closes their fds', () =>
    run(false, true));
});
