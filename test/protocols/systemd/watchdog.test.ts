// watchdog(): WATCHDOG=1 at half of WATCHDOG_USEC to $NOTIFY_SOCKET, only
// when WATCHDOG_PID is ours or unset, on a timer that never keeps the process
// alive, stopped by close() and `using`. (Against the real systemd: real.test.ts.)
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { FdSocket } from 'fdpass';
import { watchdog } from 'fdpass/systemd';
import { noLeak, repoRoot, tempDir } from '../../helpers.js';

const VARS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;
const saved = Object.fromEntries(VARS.map((v) => [v, process.env[v]]));

afterEach(() => {
  for (const v of VARS) {
    if (saved[v] === undefined) delete process.env[v];
    else process.env[v] = saved[v];
  }
});

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('watchdog()', () => {
  test('pings WATCHDOG=1 at half of WATCHDOG_USEC while WATCHDOG_PID is ours; close() stops it', () =>
    noLeak(async () => {
      const t = tempDir();
      const manager = FdSocket.bindDatagram(t.path('notify'));
      process.env.NOTIFY_SOCKET = t.path('notify');
      process.env.WATCHDOG_USEC = '40000';
      process.env.WATCHDOG_PID = String(process.pid);
      const before = timers();
      const wd = watchdog();
      assert.deepEqual([wd.active, wd.interval, wd.usec], [true, 20, 40000]);
      // The first at once, then one per interval: three in a row.
      for (let i = 0; i < 3; i++) {
        const m = (await manager.recv())!;
        assert.equal(Buffer.from(m.data).toString(), 'WATCHDOG=1');
        assert.deepEqual(m.fds, []);
      }
      assert.equal(await wd.ping(), true);
      wd.close();
      assert.equal(wd.active, false);
      assert.equal(await wd.ping(), false);
      assert.equal(timers(), before, 'no timer left');
      manager.close();
      t.cleanup();
    }));

  test('inactive, sending nothing, where the manager asked for no watchdog; `using` closes', () => {
    process.env.NOTIFY_SOCKET = '/nonexistent/notify';
    const cases: [Record<string, string | undefined>, boolean][] = [
      [{ WATCHDOG_USEC: undefined }, false],
      [{ WATCHDOG_USEC: '0' }, false],
      [{ WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(process.pid + 1) }, false],
      [{ WATCHDOG_USEC: '1000000', WATCHDOG_PID: undefined, NOTIFY_SOCKET: undefined }, false],
    ];
    for (const [env, active] of cases) {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      using wd = watchdog();
      assert.equal(wd.active, active, JSON.stringify(env));
      assert.equal(wd.interval, 0);
    }
    process.env.NOTIFY_SOCKET = '/nonexistent/notify';
    process.env.WATCHDOG_USEC = '1000000';
    delete process.env.WATCHDOG_PID;
    const before = timers();
    {
      using wd = watchdog({ unsetEnvironment: true });
      wd.on('error', () => undefined); // the socket does not exist
      assert.deepEqual([wd.active, wd.interval], [true, 500]);
      assert.equal(process.env.WATCHDOG_USEC, undefined);
    }
    assert.equal(timers(), before);
  });

  test('malformed WATCHDOG_USEC or WATCHDOG_PID: ERR_FDPASS_BAD_ENV; bad options: TypeError', () => {
    process.env.NOTIFY_SOCKET = '/nonexistent/notify';
    for (const [usec, pid] of [
      ['ten', undefined],
      ['-5', undefined],
      ['1000', 'me'],
      ['1000', '0'],
      ['99999999999999', undefined],
    ] as const) {
      process.env.WATCHDOG_USEC = usec;
      if (pid === undefined) delete process.env.WATCHDOG_PID;
      else process.env.WATCHDOG_PID = pid;
      assert.throws(() => watchdog(), { code: 'ERR_FDPASS_BAD_ENV' }, `${usec} ${pid}`);
    }
    assert.throws(() => watchdog({ unsetEnvironment: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
  });

  test('the timer never keeps the process alive', async () => {
    const t = tempDir();
    const manager = FdSocket.bindDatagram(t.path('notify'));
    const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: t.path('notify'), WATCHDOG_USEC: '60000000' };
    delete env.WATCHDOG_PID;
    const ok = spawn(
      process.execPath,
      ['--input-type=module', '-e', "import { watchdog } from 'fdpass/systemd'; console.log(watchdog().active);"],
      {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
        cwd: repoRoot,
      },
    );
    let out = '';
    ok.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // A 30 s interval: the child ends at once, after its first ping.
    const [okCode] = (await once(ok, 'exit')) as [number];
    assert.equal(okCode, 0);
    assert.equal(out.trim(), 'true');
    const m = (await manager.recv())!;
    assert.equal(Buffer.from(m.data).toString(), 'WATCHDOG=1');
    manager.close();
    t.cleanup();
  });
});
