import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { FdSocket } from 'fdpass';
import { listenFds, notify, notifyBarrier, storeFds, removeStoredFds, NOTIFY_MAX_BYTES } from 'fdpass/systemd';
import { noLeak, repoRoot, tempDir } from '../../helpers.js';
import { JsonLines, exited, type Json } from '../../lines.js';
import { startReceiver } from './receiver.js';
import { have, needs } from '../../tools.js';

const fixture = join(repoRoot, 'build-test', 'test', 'protocols', 'systemd', 'fixtures', 'activated.js');

function get(socketPath: string): Promise<Json> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(JSON.parse(body) as Json));
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Start systemd-socket-activate with -l for each path; resolves once all listen. */
async function activate(paths: string[], extra: string[]): Promise<{ stop: () => Promise<void> }> {
  const args = [...paths.flatMap((p) => ['-l', p]), ...extra, process.execPath, fixture];
  const child = spawn('systemd-socket-activate', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = new JsonLines(child);
  // It logs "Listening on PATH as FD." on stderr once each socket listens.
  await lines.stderrHas(paths.map((p) => `Listening on ${p}`));
  return {
    stop: async () => {
      child.kill('SIGTERM');
      await exited(child);
    },
  };
}

describe('listenFds with systemd-socket-activate', needs('systemd-socket-activate'), () => {
  test('several listeners with --fdname: names, order, close-on-exec, HTTP on each fd', async () => {
    const t = tempDir();
    const a = t.path('a.sock');
    const b = t.path('b.sock');
    const c = t.path('c.sock');
    const act = await activate([a, b, c], ['--fdname=web:admin:metrics']);
    try {
      const ra = await get(a); // the first connection makes it exec our fixture
      const rb = await get(b);
      const rc = await get(c);
      assert.deepEqual([ra.name, rb.name, rc.name], ['web', 'admin', 'metrics']);
      assert.deepEqual([ra.fd, rb.fd, rc.fd], [3, 4, 5]);
      assert.equal(ra.pid, rb.pid);
      assert.deepEqual((ra.env as Json).LISTEN_FDNAMES, 'web:admin:metrics');
      assert.equal((ra.env as Json).LISTEN_PID, String(ra.pid));
      assert.deepEqual(ra.seen, [
        { fd: 3, name: 'web', cloexec: true },
        { fd: 4, name: 'admin', cloexec: true },
        { fd: 5, name: 'metrics', cloexec: true },
      ]);
      // unsetEnvironment defaults to true: gone, and a second call hands out nothing.
      assert.deepEqual(ra.envAfter, { LISTEN_PID: null, LISTEN_FDS: null });
      assert.equal(ra.again, 0);
      // Several requests on the inherited listeners.
      const more = await Promise.all([get(a), get(b), get(a), get(c)]);
      assert.deepEqual(
        more.map((r) => r.name),
        ['web', 'admin', 'web', 'metrics'],
      );
    } finally {
      await act.stop();
      t.cleanup();
    }
  });

  test('without --fdname the names are "unknown"', async () => {
    const t = tempDir();
    const a = t.path('a.sock');
    const b = t.path('b.sock');
    const act = await activate([a, b], []);
    try {
      const rb = await get(b);
      assert.equal((rb.env as Json).LISTEN_FDNAMES, undefined);
      assert.deepEqual(rb.seen, [
        { fd: 3, name: 'unknown', cloexec: true },
        { fd: 4, name: 'unknown', cloexec: true },
      ]);
      assert.equal((await get(a)).fd, 3);
    } finally {
      await act.stop();
      t.cleanup();
    }
  });
});

describe('listenFds with malformed or foreign variables', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  function set(pid: string | undefined, fds: string | undefined, names?: string): void {
    for (const [k, v] of [
      ['LISTEN_PID', pid],
      ['LISTEN_FDS', fds],
      ['LISTEN_FDNAMES', names],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const bad = (message: RegExp) => (err: unknown) => {
    assert.equal((err as { code?: string }).code, 'ERR_FDPASS_BAD_ENV');
    assert.match((err as Error).message, message);
    return true;
  };

  test('not set, or set for another process: no fds', () => {
    set(undefined, undefined);
    assert.deepEqual(listenFds(), []);
    set(String(process.pid), undefined);
    assert.deepEqual(listenFds(), []);
    set(String(process.pid + 1), '2', 'a:b');
    assert.deepEqual(listenFds({ unsetEnvironment: false }), []);
    assert.equal(process.env.LISTEN_FDS, '2');
    set(String(process.pid), '0');
    assert.deepEqual(listenFds(), []);
    assert.equal(process.env.LISTEN_PID, undefined);
  });

  test('malformed numbers and names give ERR_FDPASS_BAD_ENV, never a wrong fd', () => {
    set('12abc', '1');
    assert.throws(() => listenFds(), bad(/LISTEN_PID="12abc" is not a decimal number/));
    assert.equal(process.env.LISTEN_PID, undefined, 'unset even on error');
    set(String(process.pid), '-1');
    assert.throws(() => listenFds(), bad(/LISTEN_FDS="-1"/));
    set(String(process.pid), ' 2');
    assert.throws(() => listenFds(), bad(/LISTEN_FDS=" 2"/));
    set(String(process.pid), '99999999999');
    assert.throws(() => listenFds(), bad(/out of range/));
    set('0', '1');
    assert.throws(() => listenFds(), bad(/LISTEN_PID=0/));
    set(String(process.pid), '2', 'a:b:c');
    assert.throws(() => listenFds({ unsetEnvironment: false }), bad(/LISTEN_FDNAMES has 3 name\(s\).*LISTEN_FDS=2/));
    assert.equal(process.env.LISTEN_FDS, '2', 'kept with unsetEnvironment: false');
    set(String(process.pid), '1', '');
    assert.throws(() => listenFds(), bad(/LISTEN_FDNAMES has 0 name\(s\)/));
  });

  test('an fd in the range that is not open is an error, and nothing is handed out', () => {
    set(String(process.pid), '4000');
    assert.throws(() => listenFds(), bad(/LISTEN_FDS=4000 but fd \d+ is not usable: fcntl EBADF/));
  });

  test('bad options are TypeErrors', () => {
    assert.throws(() => listenFds({ unsetEnvironment: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe('notify', () => {
  const savedNotify = process.env.NOTIFY_SOCKET;
  afterEach(() => {
    if (savedNotify === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = savedNotify;
  });

  test('without NOTIFY_SOCKET: resolves false, sends nothing', () =>
    noLeak(async () => {
      delete process.env.NOTIFY_SOCKET;
      assert.equal(await notify('READY=1'), false);
      assert.equal(await storeFds('x', [0]), false);
      assert.equal(await notifyBarrier(), false);
      process.env.NOTIFY_SOCKET = '';
      assert.equal(await notify({ READY: 1 }), false);
    }));

  for (const kind of ['path', 'abstract'] as const) {
    test(`state and fds reach a systemd-style receiver (${kind} address)`, async (ctx) => {
      if (!have(ctx, 'python3')) return;
      const t = tempDir();
      const address = kind === 'path' ? t.path('notify.sock') : `@fdpass-test-notify-${process.pid}-${Date.now()}`;
      const rx = await startReceiver(address);
      const file = t.path('data.txt');
      writeFileSync(file, 'stored');
      const fd = openSync(file, 'r');
      try {
        await noLeak(async () => {
          process.env.NOTIFY_SOCKET = address;
          assert.equal(await notify({ READY: 1, STATUS: 'serving 3 listeners', MAINPID: process.pid }), true);
          let m = await rx.lines.event('event', 'message');
          assert.equal(m.text, `READY=1\nSTATUS=serving 3 listeners\nMAINPID=${process.pid}`);
          assert.deepEqual(m.fds, []);

          assert.equal(await notify('WATCHDOG=1'), true);
          m = await rx.lines.event('event', 'message');
          assert.equal(m.text, 'WATCHDOG=1');

          const [s1, s2] = FdSocket.pair();
          assert.equal(await storeFds('web', [fd, s1, s2]), true);
          m = await rx.lines.event('event', 'message');
          assert.equal(m.text, 'FDSTORE=1\nFDNAME=web');
          const got = m.fds as Json[];
          assert.equal(got.length, 3);
          assert.ok(got.every((f) => f.cloexec === true));
          assert.equal(got[0]!.ino, fstatSync(fd).ino);
          assert.match(String(got[1]!.target), /^socket:\[/);
          await s1.close();
          await s2.close();

          assert.equal(await storeFds('admin', [fd], { poll: false }), true);
          m = await rx.lines.event('event', 'message');
          assert.equal(m.text, 'FDSTORE=1\nFDNAME=admin\nFDPOLL=0');
          assert.equal(await removeStoredFds('admin'), true);
          m = await rx.lines.event('event', 'message');
          assert.equal(m.text, 'FDSTOREREMOVE=1\nFDNAME=admin');

          // 253 fds: one SCM_RIGHTS, nothing truncated.
          assert.equal(
            await notify(
              'FDSTORE=1\nFDNAME=many',
              Array.from({ length: 253 }, () => fd),
            ),
            true,
          );
          m = await rx.lines.event('event', 'message');
          assert.equal((m.fds as Json[]).length, 253);

          // The largest message the manager reads arrives whole.
          const status = `STATUS=${'x'.repeat(NOTIFY_MAX_BYTES - 7)}`;
          assert.equal(await notify(status), true);
          m = await rx.lines.event('event', 'message');
          assert.equal(m.text, status);
          assert.equal(
            rx.lines.all.some((l) => l.event === 'dropped'),
            false,
          );
          // unsetEnvironment
          assert.equal(await notify('READY=1', [], { unsetEnvironment: true }), true);
          assert.equal(process.env.NOTIFY_SOCKET, undefined);
          await rx.lines.event('event', 'message');
        });
      } finally {
        closeSync(fd);
        rx.stop();
        t.cleanup();
      }
    });
  }

  test('FdSocket.bindDatagram as the receiver: messages in order, fds close-on-exec', () =>
    noLeak(async () => {
      const t = tempDir();
      const rx = FdSocket.bindDatagram(t.path('n.sock'));
      process.env.NOTIFY_SOCKET = t.path('n.sock');
      const [x, y] = FdSocket.pair();
      await notify('READY=1');
      await notify({ STATUS: 'one' }, [x]);
      await notify({ STOPPING: 1 });
      const texts: string[] = [];
      for (let i = 0; i < 3; i++) {
        const m = (await rx.recv())!;
        texts.push(m.data.toString());
        for (const f of m.fds) closeSync(f);
      }
      assert.deepEqual(texts, ['READY=1', 'STATUS=one', 'STOPPING=1']);
      await Promise.all([rx.close(), x.close(), y.close()]);
      t.cleanup();
    }));

  test('errors: bad NOTIFY_SOCKET, nobody listening, bad state', () =>
    noLeak(async () => {
      const t = tempDir();
      process.env.NOTIFY_SOCKET = 'run/systemd/notify';
      await assert.rejects(notify('READY=1'), { code: 'ERR_FDPASS_BAD_ENV', message: /neither an absolute path nor an @abstract/ });
      process.env.NOTIFY_SOCKET = t.path('missing.sock');
      await assert.rejects(notify('READY=1'), { code: 'ENOENT', syscall: 'connect' });
      // A socket file whose receiver is gone.
      const rx = FdSocket.bindDatagram(t.path('gone.sock'));
      await rx.close();
      process.env.NOTIFY_SOCKET = t.path('gone.sock');
      await assert.rejects(notify('READY=1'), { code: 'ECONNREFUSED' });
      await assert.rejects(notify(''), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify({ 'A=B': 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify({ STATUS: 'a\nREADY=1' }), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(notify(`STATUS=${'x'.repeat(NOTIFY_MAX_BYTES)}`), { code: 'ERR_OUT_OF_RANGE' });
      await assert.rejects(notify('READY=1', [-1]), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => storeFds('a:b', [0]), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => storeFds('ok', []), { code: 'ERR_INVALID_ARG_VALUE' });
      t.cleanup();
    }));

  test('notifyBarrier resolves only once the receiver has processed and closed the fd', async (ctx) => {
    if (!have(ctx, 'python3')) return;
    const t = tempDir();
    const rx = await startReceiver(t.path('barrier.sock'));
    try {
      await noLeak(async () => {
        process.env.NOTIFY_SOCKET = t.path('barrier.sock');
        await notify('STATUS=before the barrier');
        let settled = false;
        const barrier = notifyBarrier({ timeout: 60_000 }).then((v) => {
          settled = true;
          return v;
        });
        assert.equal((await rx.lines.event('event', 'message')).text, 'STATUS=before the barrier');
        const m = await rx.lines.event('event', 'message');
        assert.equal(m.text, 'BARRIER=1');
        assert.equal((m.fds as Json[]).length, 1);
        // The receiver has the fd, and holds it until told: the barrier is not done.
        await new Promise((r) => setImmediate(r));
        assert.equal(settled, false);
        rx.release();
        assert.equal(await barrier, true);
        await rx.lines.event('event', 'barrier-closed');
      });
    } finally {
      rx.stop();
      t.cleanup();
    }
  });

  test('notifyBarrier ignores what a manager writes into the barrier fd (its fds closed) and waits for the close', async (ctx) => {
    if (!have(ctx, 'python3')) return;
    const t = tempDir();
    const rx = await startReceiver(t.path('scribble.sock'));
    try {
      await noLeak(async () => {
        process.env.NOTIFY_SOCKET = t.path('scribble.sock');
        let settled = false;
        const barrier = notifyBarrier({ timeout: 60_000 }).then((v) => {
          settled = true;
          return v;
        });
        assert.equal((await rx.lines.event('event', 'message')).text, 'BARRIER=1');
        rx.scribble();
        // It read the bytes (and closed the fds) and still waits: the fd is open.
        await rx.lines.event('event', 'scribbled');
        await new Promise((r) => setImmediate(r));
        assert.equal(settled, false, 'notifyBarrier resolved on bytes, before the close');
        rx.release();
        assert.equal(await barrier, true);
        await rx.lines.event('event', 'barrier-closed');
      });
    } finally {
      rx.stop();
      t.cleanup();
    }
  });

  test('notifyBarrier times out with ETIMEDOUT when the receiver never closes the fd', async (ctx) => {
    if (!have(ctx, 'python3')) return;
    const t = tempDir();
    const rx = await startReceiver(t.path('stuck.sock'));
    try {
      await noLeak(async () => {
        process.env.NOTIFY_SOCKET = t.path('stuck.sock');
        await assert.rejects(notifyBarrier({ timeout: 200 }), { code: 'ETIMEDOUT' });
        const ac = new AbortController();
        const p = notifyBarrier({ timeout: 60_000, signal: ac.signal });
        await rx.lines.event('event', 'message');
        ac.abort();
        await assert.rejects(p, { name: 'AbortError' });
      });
    } finally {
      rx.stop();
      t.cleanup();
    }
  });
});

test('fixture exists (compiled by npm test)', () => {
  assert.ok(existsSync(fixture), fixture);
});
