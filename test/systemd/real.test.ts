// fdpass/systemd against a real service manager: Debian 12's systemd 252,
// booted as PID 1 of a systemd-nspawn container (test/systemd/container.ts),
// with units these tests write. The services are fixtures under
// test/systemd/fixtures run with this Node; the tests reach their sockets
// through /proc/<container pid>/root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Container, needsContainer } from './container.js';
import type { Json } from '../lines.js';

const FIXTURES = '/opt/fdpass/build-test/test/systemd/fixtures';
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
});
