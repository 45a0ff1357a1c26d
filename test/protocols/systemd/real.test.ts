// fdpass/systemd against a real service manager: Debian 12's systemd 252,
// booted as PID 1 of a systemd-nspawn container (test/protocols/systemd/container.ts),
// with units these tests write. The services are fixtures under
// test/protocols/systemd/fixtures run with this Node; the tests reach their sockets
// through /proc/<container pid>/root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { Container, needsContainer } from './container.js';
import { docBlock } from '../../helpers.js';
import type { Json } from '../../lines.js';

const FIXTURES = '/opt/fdpass/build-test/test/protocols/systemd/fixtures';
const NODE = '/usr/local/bin/node';

/** GET an HTTP path over a Unix socket; the JSON body. */
export function getJson(socketPath: string, path = '/'): Promise<Json> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          const j = JSON.parse(body) as Json;
          if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${res.statusCode}: ${body}`));
          else resolve(j);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`${path}: no answer within 60 s`)));
    req.on('error', reject);
  });
}

/** Poll until check() gives a value (a deadline for a broken setup, not a timing assertion). */
export async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('fdpass/systemd against a real systemd 252 (systemd-nspawn)', needsContainer(), () => {
  let c: Container;
  before(
    async () => {
      c = await Container.boot();
      await c.exec(['mkdir', '-p', '/run/fdpass']);
    },
    { timeout: 1_500_000 }, // a fresh machine builds the root first (mmdebstrap)
  );
  after(async () => {
    await c?.stop();
  });

  test('socket units with FileDescriptorName=: listenFds() names, close-on-exec, LISTEN_* unset, activation on the first connection and after stop', async () => {
    await c.install({
      'web.socket': '[Socket]\nListenStream=/run/fdpass/web.sock\nFileDescriptorName=web\nService=act.service\n',
      'admin.socket': '[Socket]\nListenStream=/run/fdpass/admin.sock\nFileDescriptorName=admin\nService=act.service\n',
      'act.service': `[Unit]\nRequires=web.socket admin.socket\n[Service]\nSockets=web.socket admin.socket\nExecStart=${NODE} ${FIXTURES}/activated.js\n`,
    });
    await c.systemctl('start', 'web.socket', 'admin.socket');
    assert.equal((await c.show('act.service', 'ActiveState')).ActiveState, 'inactive');
    // The first connection starts the service.
    const web = await getJson(c.path('/run/fdpass/web.sock'));
    const admin = await getJson(c.path('/run/fdpass/admin.sock'));
    assert.equal(web.name, 'web');
    assert.equal(admin.name, 'admin');
    assert.equal(web.pid, admin.pid);
    assert.equal((await c.show('act.service', 'MainPID')).MainPID, String(web.pid));
    // Both fds from 3 on, named by FileDescriptorName=, close-on-exec; the
    // order is systemd's, and LISTEN_FDNAMES says it.
    const seen = web.seen as { fd: number; name: string; cloexec: boolean }[];
    assert.deepEqual(
      seen.map((s) => s.fd),
      [3, 4],
    );
    assert.deepEqual(seen.map((s) => s.name).sort(), ['admin', 'web']);
    assert.ok(seen.every((s) => s.cloexec));
    const env = web.env as Json;
    assert.equal(env.LISTEN_FDNAMES, seen.map((s) => s.name).join(':'));
    assert.equal(env.LISTEN_PID, String(web.pid));
    assert.deepEqual(web.envAfter, { LISTEN_PID: null, LISTEN_FDS: null });
    assert.equal(web.again, 0);
    // Stopped, it is started again by the next connection, on the same sockets.
    await c.systemctl('stop', 'act.service');
    assert.equal((await c.show('act.service', 'ActiveState')).ActiveState, 'inactive');
    const again = await getJson(c.path('/run/fdpass/admin.sock'));
    assert.equal(again.name, 'admin');
    assert.notEqual(again.pid, web.pid);
    await c.systemctl('stop', 'act.service', 'web.socket', 'admin.socket');
  });

  describe('Type=notify and the fd store', () => {
    const control = '/run/fdpass/store.sock';
    let first: Json;
    before(async () => {
      await c.install({
        'store.service':
          '[Service]\nType=notify\nFileDescriptorStoreMax=4\nRestart=always\n' +
          `ExecStart=${NODE} ${FIXTURES}/stored.js ${control} /run/fdpass/store.data\n`,
      });
    });
    const state = (): Promise<Json> => getJson(c.path(control), '/state');
    const show = async (): Promise<Record<string, string>> =>
      c.show('store.service', 'ActiveState', 'SubState', 'StatusText', 'MainPID', 'NFileDescriptorStore', 'NRestarts');

    test('READY=1 and STATUS= reach the manager; storeFds() fills the store (NFileDescriptorStore)', async () => {
      await c.systemctl('start', 'store.service'); // returns once READY=1 arrived
      first = await state();
      assert.deepEqual(first.got, []);
      assert.deepEqual(first.stored, ['control', 'file']);
      assert.equal(first.barrier, true);
      let s = await show();
      assert.equal(s.ActiveState, 'active');
      assert.equal(s.SubState, 'running');
      assert.equal(s.MainPID, String(first.pid));
      assert.equal(s.StatusText, `serving as ${String(first.pid)}`);
      assert.equal(s.NFileDescriptorStore, '2');
      assert.deepEqual(await getJson(c.path(control), '/status?text=busy%20now'), { sent: true });
      s = await until('StatusText', async () => {
        const v = await show();
        return v.StatusText === 'busy now' ? v : undefined;
      });
      assert.equal(s.StatusText, 'busy now');
    });

    /** The fds the service got back, checked against what the first generation held. */
    function assertGotBack(st: Json): void {
      const got = st.got as { name: string; fd: number; target: string; ino: number; cloexec: boolean }[];
      const held = first.held as Record<string, { target: string; ino: number }>;
      assert.deepEqual(got.map((g) => g.name).sort(), ['control', 'file']);
      for (const g of got) {
        assert.equal(g.ino, held[g.name]!.ino, `${g.name}: the same open file as the first generation's`);
        assert.equal(g.target, held[g.name]!.target);
        assert.equal(g.cloexec, true);
      }
      assert.equal((st.env as Json).LISTEN_FDNAMES, got.map((g) => g.name).join(':'));
      assert.equal(st.envAfter, null);
      assert.deepEqual(st.stored, []); // nothing stored twice
    }

    test('after systemctl restart, the fds and their names come back through listenFds()', async () => {
      await c.systemctl('restart', 'store.service');
      const st = await state();
      assert.notEqual(st.pid, first.pid);
      assertGotBack(st);
      assert.equal((await show()).NFileDescriptorStore, '2');
    });

    test('after a SIGKILL with Restart=always, the fds and their names come back', async () => {
      const before = await show();
      await c.systemctl('kill', '--signal=SIGKILL', '--kill-who=main', 'store.service');
      const s = await until('a restarted main process', async () => {
        const v = await show();
        return v.MainPID !== before.MainPID && v.MainPID !== '0' && v.SubState === 'running' ? v : undefined;
      });
      assert.equal(Number(s.NRestarts), Number(before.NRestarts) + 1);
      const st = await state();
      assert.equal(String(st.pid), s.MainPID);
      assertGotBack(st);
    });

    test('removeStoredFds() and notifyBarrier(): once the barrier resolves, systemd has removed them', async () => {
      assert.deepEqual(await getJson(c.path(control), '/remove?name=file'), { sent: true, barrier: true });
      assert.equal((await show()).NFileDescriptorStore, '1');
      assert.deepEqual(await getJson(c.path(control), '/store?name=extra&n=2'), { sent: true, barrier: true });
      assert.equal((await show()).NFileDescriptorStore, '3');
      assert.deepEqual(await getJson(c.path(control), '/remove?name=extra'), { sent: true, barrier: true });
      assert.equal((await show()).NFileDescriptorStore, '1');
    });

    test('bad input: a name systemd refuses is stored as "stored"; fds beyond FileDescriptorStoreMax= are closed', async () => {
      // storeFds() refuses such a name before sending (TypeError); raw notify() sends it.
      const raw = await getJson(c.path(control), `/raw?text=${encodeURIComponent('FDSTORE=1\nFDNAME=a:b')}&n=1`);
      assert.deepEqual(raw, { sent: true, barrier: true });
      assert.equal((await show()).NFileDescriptorStore, '2');
      assert.match(await c.journal('store.service'), /Passed FDNAME= name is invalid, ignoring/);
      // 5 more with room for 2: the datagram arrives (true), systemd keeps 2.
      assert.deepEqual(await getJson(c.path(control), '/store?name=many&n=5'), { sent: true, barrier: true });
      assert.equal((await show()).NFileDescriptorStore, '4');
      assert.match(await c.journal('store.service'), /Cannot store more fds than FileDescriptorStoreMax=4, closing remaining/);
      await c.systemctl('restart', 'store.service');
      const got = (await state()).got as { name: string }[];
      assert.deepEqual(got.map((g) => g.name).sort(), ['control', 'many', 'many', 'stored']);
    });

    test('systemctl stop empties the store (systemd 252 has no FileDescriptorStorePreserve=)', async () => {
      await c.systemctl('stop', 'store.service');
      assert.equal((await show()).NFileDescriptorStore, '0');
      await c.systemctl('start', 'store.service');
      const st = await state();
      assert.deepEqual(st.got, []);
      assert.deepEqual(st.stored, ['control', 'file']);
      await c.systemctl('stop', 'store.service');
    });
  });

  describe('zero-downtime systemctl restart: listenStored()', () => {
    const unit = (name: string, exec: string, extra = ''): string =>
      // StartLimitIntervalSec=0: 6 starts in 10 s exceed the default start limit (5).
      `[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=notify\nFileDescriptorStoreMax=2\n${extra}ExecStart=${NODE} ${FIXTURES}/restartable.js ${exec}\n`;

    test('several listeners: taken anew, stored, and back from the store after systemctl restart', async () => {
      await c.install({ 'multi.service': unit('multi', 'store http=/run/fdpass/m-http.sock admin=/run/fdpass/m-admin.sock') });
      await c.systemctl('start', 'multi.service');
      const a = await getJson(c.path('/run/fdpass/m-http.sock'));
      const b = await getJson(c.path('/run/fdpass/m-admin.sock'));
      assert.deepEqual([a.name, b.name, a.inherited, a.stored], ['http', 'admin', [], true]);
      assert.equal((await c.show('multi.service', 'NFileDescriptorStore')).NFileDescriptorStore, '2');
      await c.systemctl('restart', 'multi.service');
      const a2 = await getJson(c.path('/run/fdpass/m-http.sock'));
      const b2 = await getJson(c.path('/run/fdpass/m-admin.sock'));
      assert.notEqual(a2.pid, a.pid);
      assert.equal(b2.pid, a2.pid);
      assert.deepEqual(a2.inherited, ['http', 'admin']);
      // Stored again by the new process: systemd keeps one copy of a socket.
      assert.equal((await c.show('multi.service', 'NFileDescriptorStore')).NFileDescriptorStore, '2');
      assert.doesNotMatch(await c.journal('multi.service'), /Cannot store more fds/);
      await c.systemctl('stop', 'multi.service');
    });

    test('a listener moves from a socket unit to the store, and outlives the socket unit', async () => {
      const path = '/run/fdpass/mv.sock';
      await c.install({
        'mv.socket': `[Socket]\nListenStream=${path}\nFileDescriptorName=http\nService=mv.service\n`,
        'mv.service': unit('mv', 'store http=', 'Sockets=mv.socket\n'),
      });
      await c.systemctl('start', 'mv.socket');
      const first = await getJson(c.path(path)); // activation
      assert.deepEqual(first.inherited, ['http']);
      assert.equal((await c.show('mv.service', 'NFileDescriptorStore')).NFileDescriptorStore, '1');
      // Restarted, it gets the socket unit's fd and the store's copy: one serves.
      await c.systemctl('restart', 'mv.service');
      const second = await getJson(c.path(path));
      assert.notEqual(second.pid, first.pid);
      assert.deepEqual(second.inherited, ['http']);
      assert.equal((await c.show('mv.service', 'NFileDescriptorStore')).NFileDescriptorStore, '1');
      // The socket unit goes away; the store keeps the listener.
      c.writeFile('/etc/systemd/system/mv.service', unit('mv', 'store http='));
      await c.systemctl('stop', 'mv.socket');
      await c.exec(['rm', '/etc/systemd/system/mv.socket']);
      await c.systemctl('daemon-reload');
      assert.equal((await getJson(c.path(path))).pid, second.pid);
      await c.systemctl('restart', 'mv.service');
      const third = await getJson(c.path(path));
      assert.notEqual(third.pid, second.pid);
      assert.deepEqual(third.inherited, ['http']);
      await c.systemctl('stop', 'mv.service');
    });

    test('ExecReload= starts the new process first: a handoff inside the unit, MAINPID= with NotifyAccess=all', async () => {
      await c.install({
        'rl.service':
          '[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=notify\nNotifyAccess=all\nFileDescriptorStoreMax=1\n' +
          `ExecStart=${NODE} ${FIXTURES}/reloadable.js /run/fdpass/rl.sock\nExecReload=/bin/kill -HUP $MAINPID\n`,
      });
      const path = c.path('/run/fdpass/rl.sock');
      const mainPid = async (): Promise<string> => (await c.show('rl.service', 'MainPID')).MainPID!;
      await c.systemctl('start', 'rl.service');
      const first = await getJson(path);
      assert.equal(first.how, 'new');
      assert.equal(String(first.pid), await mainPid());
      // systemctl reload returns once kill -HUP did; the new process becomes main when it says so.
      await c.systemctl('reload', 'rl.service');
      await until('the successor as the main process', async () => {
        const s = await c.show('rl.service', 'MainPID', 'SubState');
        return s.MainPID !== String(first.pid) && s.SubState === 'running' ? s : undefined;
      });
      const second = await getJson(path);
      assert.equal(second.how, 'handoff');
      assert.equal(String(second.pid), await mainPid());
      // The predecessor drained and exited; the unit stayed up throughout.
      await until('the predecessor gone', async () => ((await c.exec(['kill', '-0', String(first.pid)])).code !== 0 ? true : undefined));
      assert.equal((await c.show('rl.service', 'ActiveState')).ActiveState, 'active');
      // A restart still finds the listener in the fd store.
      await c.systemctl('restart', 'rl.service');
      const third = await getJson(path);
      assert.equal(third.how, 'store');
      assert.equal(String(third.pid), await mainPid());
      await c.systemctl('stop', 'rl.service');
    });

    test("docs/systemd.md's server and unit file, as pasted: restarted, it takes its listener from the store", async () => {
      const js = docBlock('docs/systemd.md', '## Zero-downtime `systemctl restart`');
      const ini = docBlock('docs/systemd.md', '## Zero-downtime `systemctl restart`', 'ini');
      const unitPath = /^# (\/etc\/systemd\/system\/\S+)$/m.exec(ini)![1]!;
      const script = /^ExecStart=\/usr\/bin\/node (\S+)$/m.exec(ini)![1]!;
      c.writeFile(script, js);
      // 'fdpass' resolves to the checkout, as if installed next to the script.
      await c.exec(['mkdir', '-p', join(dirname(script), 'node_modules')]);
      await c.exec(['ln', '-s', '/opt/fdpass', join(dirname(script), 'node_modules', 'fdpass')]);
      c.writeFile(unitPath, ini);
      await c.systemctl('daemon-reload');
      const unitName = unitPath.split('/').pop()!;
      const hello = async (): Promise<string> => {
        const r = await c.exec([NODE, '-e', 'fetch("http://127.0.0.1:8080/").then((r) => r.text()).then((t) => process.stdout.write(t))']);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout;
      };
      await c.systemctl('start', unitName);
      const pid1 = (await c.show(unitName, 'MainPID')).MainPID;
      assert.equal(await hello(), `hello from ${pid1}\n`);
      await c.systemctl('restart', unitName);
      const pid2 = (await c.show(unitName, 'MainPID')).MainPID;
      assert.notEqual(pid2, pid1);
      assert.equal(await hello(), `hello from ${pid2}\n`);
      const log = await c.journal(unitName);
      assert.match(log, /listening anew[^]*took the listener from systemd/);
      assert.equal((await c.show(unitName, 'NFileDescriptorStore')).NFileDescriptorStore, '1');
      await c.systemctl('stop', unitName);
    });

    /** 5 restarts under the load generator of `fdpass demo`, inside the container; its summary. */
    async function restartsUnderLoad(unitName: string): Promise<Json> {
      await c.systemctl('start', unitName);
      const load = c.spawnNode(['/opt/fdpass/dist/cli/main.js', 'demo', '--role=load', '--port=8080', '--concurrency=16']);
      let stderr = '';
      load.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const messages: Json[] = [];
      let wake: (() => void) | null = null;
      load.on('message', (m: Json) => {
        messages.push(m);
        wake?.();
      });
      // The next message that matches; a load generator silent for 120 s is a failure, named.
      const next = async (match: (m: Json) => boolean): Promise<Json> => {
        for (const deadline = Date.now() + 120_000; ;) {
          const i = messages.findIndex(match);
          if (i >= 0) return messages.splice(i, 1)[0]!;
          if (load.exitCode !== null) throw new Error(`the load generator exited: ${stderr}`);
          if (Date.now() > deadline) throw new Error(`no such message from the load generator within 120 s: ${JSON.stringify(messages)}`);
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 1000);
          });
        }
      };
      try {
        // Each generation serves some requests before the next restart.
        const served = (pid: string) => (m: Json) =>
          m.event === 'progress' && Number((m.byGeneration as Record<string, number>)[pid] ?? 0) >= 50;
        await next(served((await c.show(unitName, 'MainPID')).MainPID));
        for (let i = 0; i < 5; i++) {
          try {
            await c.systemctl('restart', unitName); // returns once the new process sent READY=1
          } catch (err) {
            // Seen once under heavy load, not reproduced since: say why.
            const journal = await c.journal(unitName).catch((e: Error) => `(no journal: ${e.message})`);
            throw new Error(
              `${(err as Error).message}\nrestart ${i + 1}; the unit's journal:\n${journal.split('\n').slice(-40).join('\n')}`,
            );
          }
          await next(served((await c.show(unitName, 'MainPID')).MainPID));
        }
        load.send('stop');
        return await next((m) => m.event === 'summary');
      } finally {
        if (load.exitCode === null) load.kill('SIGKILL');
        await c.systemctl('stop', unitName);
      }
    }

    // A start held before its process runs: ExecStartPre waits for the file
    // /run/fdpass/go (looking every 50 ms, for up to 120 s), so that a test
    // can knock on the port while nothing runs, for as long as it needs.
    const gate = "ExecStartPre=/bin/sh -c 'i=0; while [ ! -e /run/fdpass/go ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done'\n";

    /** Restart `unitName` held between its stop and its start; what a connection to :8080 gets meanwhile. */
    async function knockWhileRestarting(unitName: string): Promise<string> {
      await c.exec(['touch', '/run/fdpass/go']);
      await c.systemctl('start', unitName);
      await c.exec(['rm', '/run/fdpass/go']);
      await c.systemctl('restart', '--no-block', unitName);
      // The old process is gone and the new one not started: systemd says so.
      await until('the restart held in ExecStartPre', async () =>
        (await c.show(unitName, 'SubState')).SubState === 'start-pre' ? true : undefined,
      );
      const knock = await c.exec([
        NODE,
        '-e',
        `const s = require('node:net').connect(8080, '127.0.0.1');
         s.on('connect', () => { console.log('connected'); s.destroy(); });
         s.on('error', (e) => console.log(e.code));`,
      ]);
      await c.exec(['touch', '/run/fdpass/go']);
      await until('the restarted service running', async () =>
        (await c.show(unitName, 'SubState')).SubState === 'running' ? true : undefined,
      );
      await c.systemctl('stop', unitName);
      return knock.stdout.trim();
    }

    test('5 restarts under load: 0 failed requests with the store; the same service listening anew each time fails requests', async (t) => {
      await c.exec(['touch', '/run/fdpass/go']);
      await c.install({
        'zd-store.service': unit('zd-store', 'store http=8080', gate),
        'zd-plain.service': unit('zd-plain', 'plain http=8080', gate),
      });
      let t0 = performance.now();
      const withStore: Json = { ...(await restartsUnderLoad('zd-store.service')), ms: Math.round(performance.now() - t0) };
      t0 = performance.now();
      const without: Json = { ...(await restartsUnderLoad('zd-plain.service')), ms: Math.round(performance.now() - t0) };
      const figures = (s: Json): Json => ({
        requests: s.requests,
        failed: s.failed,
        longestPauseMs: s.longestPauseMs,
        underLoadMs: s.ms,
        generations: Object.keys(s.byGeneration as Json).length,
        errors: (s.errors as string[]).slice(0, 3),
      });
      t.diagnostic(`with the store: ${JSON.stringify(figures(withStore))}`);
      t.diagnostic(`without it: ${JSON.stringify(figures(without))}`);
      assert.equal(Object.keys(withStore.byGeneration as Json).length, 6, 'every generation served');
      assert.equal(withStore.failed, 0, JSON.stringify(withStore.errors));
      // Why, without a race: between the old process and the new one, a
      // connection waits in the stored listener's backlog, and is refused
      // when the service listens anew (the load's failures above say the same,
      // as figures: how many depends on how long each restart took).
      assert.equal(
        await knockWhileRestarting('zd-store.service'),
        'connected',
        'the stored listener takes connections while no process runs',
      );
      assert.equal(
        await knockWhileRestarting('zd-plain.service'),
        'ECONNREFUSED',
        'listening anew refuses connections while no process listens',
      );
    });
  });
});
