// acceptFds: false (SO_PASSRIGHTS off, Linux >= 6.16): sockets that must
// never receive fds make the kernel refuse them; the sender's EPERM comes as
// ERR_FDPASS_FDS_REFUSED, and a kernel without SO_PASSRIGHTS gives
// ERR_FDPASS_UNSUPPORTED_KERNEL.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { release } from 'node:os';
import { FdServer, FdSocket } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { noLeak, runPython, tempDir } from '../helpers.js';
import { needs } from '../tools.js';

const [major, minor] = release().split('.').map(Number) as [number, number];
const hasPassRights = major > 6 || (major === 6 && minor >= 16);
const newKernel = hasPassRights ? false : `Linux ${release()} has no SO_PASSRIGHTS (6.16)`;
const oldKernel = hasPassRights ? `Linux ${release()} has SO_PASSRIGHTS: tested above` : false;

const refused = { code: 'ERR_FDPASS_FDS_REFUSED', errno: -1, syscall: 'sendmsg' };

describe('acceptFds: false', { skip: newKernel }, () => {
  for (const type of ['stream', 'seqpacket'] as const) {
    test(`FdServer.listen({ type: '${type}', acceptFds: false }): every connection refuses fds, also one queued before accept`, () =>
      noLeak(async () => {
        const t = tempDir();
        const server = await FdServer.listen({ path: t.path('s'), type, acceptFds: false });
        // Connected and sending before the server accepts it.
        const early = await FdSocket.connect({ path: t.path('s'), type });
        const fd = openSync('/dev/null', 'r');
        await assert.rejects(early.send('x', [fd]), refused);
        assert.equal(fstatSync(fd).isCharacterDevice(), true, "the sender's fd is still its own");
        await early.send('plain');
        const conn = (await server.accept())!;
        const m = (await conn.recv())!;
        assert.deepEqual([Buffer.from(m.data).toString(), m.fds], ['plain', []]);
        // The accepted side may still send fds the other way.
        await conn.send('back', [fd]);
        const back = (await early.recv())!;
        assert.equal(back.fds.length, 1);
        closeSync(back.fds[0]!);
        closeSync(fd);
        for (const s of [early, conn]) s.close();
        await server.close();
        t.cleanup();
      }));
  }

  test(
    'FdSocket.bindDatagram({ acceptFds: false }): a C-library sender (CPython) gets EPERM, ours ERR_FDPASS_FDS_REFUSED',
    needs('python3'),
    () =>
      noLeak(async () => {
        const t = tempDir();
        const rx = FdSocket.bindDatagram({ path: t.path('d'), acceptFds: false });
        const tx = await FdSocket.connect({ path: t.path('d'), type: 'dgram' });
        const fd = openSync('/dev/null', 'r');
        await assert.rejects(tx.send('with fd', [fd]), refused);
        closeSync(fd);
        const out = runPython(
          `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
try:
    socket.send_fds(s, [b'py'], [0])
    print('sent')
except PermissionError as e:
    print('EPERM', e.errno)
s.send(b'py plain')`,
          [t.path('d')],
        );
        assert.equal(out.trim(), 'EPERM 1');
        const m = (await rx.recv())!;
        assert.deepEqual([Buffer.from(m.data).toString(), m.fds], ['py plain', []]);
        rx.close();
        tx.close();
        t.cleanup();
      }),
  );

  test('FdSocket.connect({ acceptFds: false }) and FdStream({ acceptFds: false }) refuse what their peer sends', () =>
    noLeak(async () => {
      const t = tempDir();
      const server = await FdServer.listen({ path: t.path('s') });
      const client = await FdSocket.connect({ path: t.path('s'), acceptFds: false });
      const conn = (await server.accept())!;
      const fd = openSync('/dev/null', 'r');
      await assert.rejects(conn.send('x', [fd]), refused);
      client.close();
      conn.close();
      await server.close();

      const [a, b] = FdStream.pair({ acceptFds: false });
      const [err] = (await Promise.all([
        new Promise<Error | null | undefined>((resolve) => a.write({ data: 'x', fds: [fd], callback: resolve })),
        once(a, 'error'),
      ])) as [Error & { code: string; errno: number; syscall: string }, unknown];
      assert.deepEqual([err.code, err.errno, err.syscall], [refused.code, refused.errno, refused.syscall]);
      closeSync(fd);
      a.destroy();
      b.destroy();
      await Promise.all([a.closed ? null : once(a, 'close'), b.closed ? null : once(b, 'close')]);
      t.cleanup();
    }));

  test('acceptFds must be a boolean, checked before anything is created', async () => {
    const t = tempDir();
    assert.throws(() => FdServer.listen({ path: t.path('s'), acceptFds: 'no' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), acceptFds: 0 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => new FdStream({ acceptFds: null as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    t.cleanup();
  });
});

test('acceptFds: false on a kernel without SO_PASSRIGHTS: ERR_FDPASS_UNSUPPORTED_KERNEL, nothing left open', { skip: oldKernel }, () =>
  noLeak(async () => {
    const t = tempDir();
    assert.throws(() => FdSocket.bindDatagram({ path: t.path('d'), acceptFds: false }), {
      code: 'ERR_FDPASS_UNSUPPORTED_KERNEL',
      syscall: 'setsockopt',
    });
    t.cleanup();
  }),
);
