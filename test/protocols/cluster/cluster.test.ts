// fdpass/cluster against real workers: node:cluster workers and plain child
// processes running test/fixtures/cluster-worker.ts, real http/https clients.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { FdServer } from 'fdpass';
import { ClusterPrimary, serve } from 'fdpass/cluster';
import type { ClusterWorkerExit } from 'fdpass/cluster';
import { delay, noLeak, repoRoot, tempDir, until } from '../../helpers.js';
import { needs } from '../../tools.js';

const fixture = join(repoRoot, 'build-test', 'test', 'fixtures', 'cluster-worker.js');
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

type Msg = Record<string, unknown>;

function message(child: ChildProcess | NodeJS.EventEmitter, pred: (m: Msg) => boolean): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Msg): void => {
      if (m && typeof m === 'object' && pred(m)) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m);
      }
    };
    const onExit = (code: unknown): void => reject(new Error(`worker exited (${String(code)}) before the message`));
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** A plain child process with an IPC channel, found by the primary through `env`. */
function startChild(env: Readonly<Record<string, string>>, args: string[]): ChildProcess {
  const child = fork(fixture, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

interface Reply {
  status: number;
  body: string;
}

function request(options: https.RequestOptions & { tls?: boolean }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const mod = options.tls ? https : http;
    const req = mod.request({ agent: false, headers: { connection: 'close' }, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function info(options: https.RequestOptions & { tls?: boolean }): Promise<Msg> {
  const r = await request({ path: '/info', ...options });
  assert.equal(r.status, 200);
  return JSON.parse(r.body) as Msg;
}

/** SIGKILL `dead` while `replies` are in flight: all are answered by `live`, and the primary saw `dead` go. */
async function killMidway(dead: ChildProcess, live: ChildProcess, replies: Promise<Msg>[], exits: ClusterWorkerExit[]): Promise<void> {
  dead.kill('SIGKILL');
  const got = await Promise.all(replies);
  assert.ok(
    got.every((r) => r.pid === live.pid),
    'every request answered by the live worker',
  );
  await until(() => exits.length === 1, 'workerExit');
  assert.equal(exits[0]!.pid, dead.pid);
}

/** A self-signed certificate for localhost (openssl), for the TLS tests. */
function makeCert(key: string, cert: string): { key: string; cert: string } {
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return { key, cert };
}

/** The TLS test over ::1 needs openssl and IPv6 on the loopback. */
const tlsOverIpv6 = needs('openssl', 'ipv6');

describe('fdpass/cluster', () => {
  it('node:cluster workers: round robin over TCP, address(), connection counts, keep-alive', async () => {
    await noLeak(async () => {
      cluster.setupPrimary({ exec: fixture, args: ['http'], silent: false });
      const listening: Msg[] = [];
      const onMessage = (_w: unknown, m: Msg): void => {
        if (m.listening) listening.push(m);
      };
      cluster.on('message', onMessage);
      const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, fork: () => cluster.fork(), workers: 2 });
      try {
        const address = primary.address() as { address: string; family: string; port: number };
        assert.equal(address.address, '127.0.0.1');
        assert.equal(address.family, 'IPv4');
        await until(() => listening.length === 2, 'two workers listening');
        for (const m of listening) assert.deepEqual(m.address, address, "a worker's server.address() is the primary's");

        const workerFds = async (): Promise<number[]> =>
          Promise.all(
            Object.values(cluster.workers ?? {}).map((w) => {
              const got = message(w!, (m) => typeof m.fds === 'number');
              w!.send('fds');
              return got.then((m) => m.fds as number);
            }),
          );
        const fdsBefore = await workerFds();
        const pids = new Map<number, number>();
        for (let i = 0; i < 20; i++) {
          const r = await info({ port: address.port, host: '127.0.0.1' });
          pids.set(r.pid as number, (pids.get(r.pid as number) ?? 0) + 1);
          assert.deepEqual(r.address, address);
          assert.equal(r.connections, 1, 'getConnections() counts the handed-over connection');
        }
        assert.deepEqual([...pids.values()], [10, 10], 'round robin: 10 each');

        // Keep-alive: several requests on one connection stay with one worker.
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const seen = new Set<number>();
        for (let i = 0; i < 5; i++) {
          const r = await info({ port: address.port, host: '127.0.0.1', agent, headers: {} });
          seen.add(r.pid as number);
          assert.equal(r.connections, 1);
        }
        agent.destroy();
        assert.equal(seen.size, 1, 'one keep-alive connection, one worker');
        // Each worker closes a connection when its client's close reaches it;
        // nothing tells the test when: ask every 10 ms, for up to 60 s.
        let fdsAfter: number[] = [];
        for (const deadline = Date.now() + 60_000; Date.now() < deadline; await delay(10)) {
          fdsAfter = await workerFds();
          if (fdsAfter.join() === fdsBefore.join()) break;
        }
        assert.deepEqual(fdsAfter, fdsBefore, 'the workers closed every handed-over connection');
        assert.equal(primary.workers.length, 2);
        assert.equal(
          primary.workers.reduce((a, w) => a + w.connections, 0),
          21,
        );
      } finally {
        cluster.off('message', onMessage);
        const workers = Object.values(cluster.workers ?? {});
        await primary.close();
        for (const w of workers) w?.process.kill('SIGKILL');
        await Promise.all(workers.map((w) => new Promise((r) => (w!.isDead() ? r(null) : w!.once('exit', r)))));
      }
    });
  });

  it('plain child processes: IPv6 and Unix listeners by name, least loaded', needs('ipv6'), async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const path = t.path('web.sock');
        const primary = await ClusterPrimary.start({
          listen: [
            { name: 'v6', port: 0, host: '::1' },
            { name: 'unix', path },
          ],
          schedule: 'least-loaded',
          setEnv: false,
        });
        const workers = [startChild(primary.env, ['http', 'v6', 'unix']), startChild(primary.env, ['http', 'v6', 'unix'])];
        try {
          await Promise.all(workers.flatMap((w) => ['v6', 'unix'].map((n) => message(w, (m) => m.listening === n))));
          const v6 = primary.address('v6') as { address: string; family: string; port: number };
          assert.deepEqual(v6, { address: '::1', family: 'IPv6', port: v6.port });
          assert.equal(primary.address('unix'), path);

          const a = await info({ host: '::1', port: v6.port, family: 6 });
          assert.deepEqual(a.address, v6);
          assert.equal(a.name, 'v6');
          const u = await info({ socketPath: path });
          assert.equal(u.address, path, "a Unix listener's server.address() is its path");
          assert.equal(u.name, 'unix');

          // A slow request holds a connection in one worker: the next go to the other.
          const arrived = Promise.race(workers.map((w) => message(w, (m) => typeof m.slow === 'number')));
          const slow = request({ socketPath: path, path: '/slow' });
          slow.catch(() => {}); // awaited below; a failed assertion before must not leave it unhandled
          const busy = (await arrived).slow as number;
          // The worker holds /slow until told: it stays busy for the three requests below.
          assert.deepEqual(
            primary.workers.map((w) => w.pid).sort(),
            workers.map((w) => w.pid).sort(),
            'both workers, the busy one included',
          );
          for (let i = 0; i < 3; i++) {
            await until(
              () => primary.workers.every((w) => w.load === (w.pid === busy ? 1 : 0)),
              'the loads settle: 1 on the busy worker, 0 on the other',
            );
            const r = await info({ host: '::1', port: v6.port, family: 6 });
            assert.notEqual(r.pid, busy, 'least loaded avoids the busy worker');
          }
          workers.find((w) => w.pid === busy)!.send('release');
          assert.equal((await slow).body, `slow ${busy}`);
        } finally {
          await primary.close();
          for (const w of workers) w.kill('SIGKILL');
          await Promise.all(workers.map(exited));
        }
      });
    } finally {
      t.cleanup();
    }
  });

  it('a worker that dies before acknowledging loses no connection: the primary re-sends its copies', async () => {
    await noLeak(async () => {
      const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false });
      const exits: ClusterWorkerExit[] = [];
      primary.on('workerExit', (e) => exits.push(e));
      const [a, b] = [startChild(primary.env, ['http']), startChild(primary.env, ['http'])] as [ChildProcess, ChildProcess];
      try {
        await Promise.all([a, b].map((w) => message(w, (m) => m.listening === 'default')));
        a.kill('SIGSTOP'); // a reads nothing from now on
        const { port } = primary.address() as { port: number };
        const replies = Array.from({ length: 10 }, () => info({ port, host: '127.0.0.1' }));
        const stuck = (): number => primary.workers.find((w) => w.pid === a.pid)?.load ?? 0;
        await until(
          () => stuck() > 0 && stuck() + (primary.workers.find((w) => w.pid === b.pid)?.connections ?? 0) === 10,
          'all 10 handed out',
        );
        const unacked = stuck();
        await killMidway(a, b, replies, exits);
        assert.equal(exits[0]!.redispatched, unacked);
      } finally {
        await primary.close();
        a.kill('SIGKILL');
        b.kill('SIGKILL');
        await Promise.all([a, b].map(exited));
      }
    });
  });

  it("schedule 'reuseport': each worker accepts on its own socket of the group; a dead or closed worker's queue goes to the others", async () => {
    await noLeak(async () => {
      const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, schedule: 'reuseport', setEnv: false });
      const exits: ClusterWorkerExit[] = [];
      primary.on('workerExit', (e) => exits.push(e));
      const [a, b] = [startChild(primary.env, ['http']), startChild(primary.env, ['http'])] as [ChildProcess, ChildProcess];
      let c: ChildProcess | undefined;
      try {
        const address = primary.address() as { address: string; family: string; port: number };
        const listening = await Promise.all([a, b].map((w) => message(w, (m) => m.listening === 'default')));
        for (const m of listening) assert.deepEqual(m.address, address, "a worker's server.address() is the group's");
        const { port } = address;
        const spread = async (n: number): Promise<Map<number, number>> => {
          const pids = new Map<number, number>();
          for (const r of await Promise.all(Array.from({ length: n }, () => info({ port, host: '127.0.0.1' })))) {
            pids.set(r.pid as number, (pids.get(r.pid as number) ?? 0) + 1);
            assert.ok((r.connections as number) >= 1, 'getConnections() counts what the server accepted itself');
          }
          return pids;
        };
        // Each connection's source port is new, so the kernel's hash spreads
        // them: both workers take some (all 40 on one: a chance of 2^-39).
        assert.deepEqual([...(await spread(40)).keys()].sort(), [a.pid, b.pid].sort());

        // a accepts nothing from now on: what hashes to its socket waits in
        // its queue. When a dies the queue outlives it (the primary holds the
        // socket too) and the primary hands it to b. Without the primary's
        // copy those connections would be reset.
        a.kill('SIGSTOP');
        const replies = Array.from({ length: 30 }, () => info({ port, host: '127.0.0.1' }));
        await killMidway(a, b, replies, exits);
        assert.ok((primary.workers.find((w) => w.pid === b.pid)?.connections ?? 0) > 0, 'b took connections from the primary');

        // A new worker takes the dead one's socket over: the kernel spreads again.
        c = startChild(primary.env, ['http']);
        await message(c, (m) => m.listening === 'default');
        assert.deepEqual([...(await spread(40)).keys()].sort(), [b.pid, c.pid].sort());

        // c closes its server: its socket's queue goes to b through the primary.
        const closed = message(c, (m) => m.closed === 'default');
        c.send('close');
        await closed;
        assert.deepEqual([...(await spread(30)).keys()], [b.pid], 'a closed server gets no new connections');
      } finally {
        await primary.close();
        for (const w of [a, b, c]) w?.kill('SIGKILL');
        await Promise.all([a, b, c].filter((w) => w !== undefined).map((w) => exited(w!)));
      }
    });
  });

  it('respawns a worker that exits, and a closing worker drains: in-flight requests finish, new ones go elsewhere', async () => {
    const started: ChildProcess[] = [];
    const primary = await ClusterPrimary.start({
      listen: { port: 0, host: '127.0.0.1' },
      setEnv: false,
      workers: 2,
      fork: (env) => {
        const c = startChild(env, ['http']);
        started.push(c);
        return c;
      },
    });
    try {
      await until(() => primary.workers.length === 2 && started.length === 2, 'two workers');
      await Promise.all(started.map((w) => message(w, (m) => m.listening === 'default')));
      const { port } = primary.address() as { port: number };
      const [first] = started as [ChildProcess];
      first.kill('SIGKILL');
      await until(() => started.length === 3, 'a third worker forked');
      await message(started[2]!, (m) => m.listening === 'default');
      await until(() => primary.workers.length === 2, 'two workers again');

      // Drain: a slow request in flight in worker X, then X closes its server.
      const arrived = Promise.race(started.slice(1).map((w) => message(w, (m) => typeof m.slow === 'number')));
      const slow = request({ port, host: '127.0.0.1', path: '/slow' });
      slow.catch(() => {}); // awaited below
      const slowPid = (await arrived).slow as number;
      const x = started.find((c) => c.pid === slowPid)!;
      const closed = message(x, (m) => m.closed === 'default');
      x.send('close');
      const others = await Promise.all(Array.from({ length: 4 }, () => info({ port, host: '127.0.0.1' })));
      assert.ok(
        others.every((r) => r.pid !== slowPid),
        'a closed server gets no new connections',
      );
      x.send('release'); // held until now: in flight all along
      assert.equal((await slow).body, `slow ${slowPid}`, 'the in-flight request finished');
      await closed;
    } finally {
      await primary.close();
      for (const c of started) c.kill('SIGKILL');
      await Promise.all(started.map(exited));
    }
  });

  it('{ fd }: a listening socket received from a CPython peer (socket.send_fds)', needs('python3'), async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const server = await FdServer.listen(t.path('give.sock'));
        const py = spawn(
          'python3',
          [
            '-c',
            [
              'import socket, sys',
              'l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
              "l.bind(('127.0.0.1', 0)); l.listen(16)",
              's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])',
              "socket.send_fds(s, [b'listener'], [l.fileno()])",
            ].join('\n'),
            t.path('give.sock'),
          ],
          { stdio: 'inherit' },
        );
        children.add(py);
        const conn = await server.accept();
        const { fd } = await conn.recvFd();
        await Promise.all([conn.close(), server.close(), exited(py)]);
        const primary = await ClusterPrimary.start({ listen: { fd }, setEnv: false });
        const w = startChild(primary.env, ['http']);
        try {
          const address = primary.address() as { address: string; port: number };
          assert.equal(address.address, '127.0.0.1');
          await message(w, (m) => m.listening === 'default');
          const got = await info({ port: address.port, host: '127.0.0.1' });
          assert.equal(got.pid, w.pid);
          assert.deepEqual(got.address, address);
        } finally {
          await primary.close(); // closes the adopted fd
          w.kill('SIGKILL');
          await exited(w);
        }
      });
    } finally {
      t.cleanup();
    }
  });

  it('https: a TLS server in the worker over the passed socket', needs('openssl'), async () => {
    const dir = tempDir();
    try {
      const { key, cert } = makeCert(dir.path('key.pem'), dir.path('cert.pem'));
      const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false });
      const w = startChild({ ...primary.env, TLS_KEY: key, TLS_CERT: cert }, ['tls']);
      try {
        await message(w, (m) => m.listening === 'default');
        const { port } = primary.address() as { port: number };
        const got = await info({ port, host: '127.0.0.1', tls: true, ca: readFileSync(cert), servername: 'localhost' });
        assert.equal(got.pid, w.pid);
      } finally {
        await primary.close();
        w.kill('SIGKILL');
        await exited(w);
      }
    } finally {
      dir.cleanup();
    }
  });

  it("schedule 'reuseport' with node:cluster workers: https over IPv6, each worker on its own socket", tlsOverIpv6, async () => {
    const dir = tempDir();
    const listening: Msg[] = [];
    const onMessage = (_w: unknown, m: Msg): void => {
      if (m.listening) listening.push(m);
    };
    cluster.on('message', onMessage);
    try {
      const { key, cert } = makeCert(dir.path('key.pem'), dir.path('cert.pem'));
      cluster.setupPrimary({ exec: fixture, args: ['tls'], silent: false });
      await noLeak(async () => {
        const primary = await ClusterPrimary.start({
          listen: { port: 0, host: '::1' },
          schedule: 'reuseport',
          fork: (env) => cluster.fork({ ...env, TLS_KEY: key, TLS_CERT: cert }),
          workers: 2,
          setEnv: false,
        });
        try {
          const address = primary.address() as { address: string; family: string; port: number };
          assert.deepEqual({ address: address.address, family: address.family }, { address: '::1', family: 'IPv6' });
          await until(() => listening.length === 2, 'two workers listening');
          for (const m of listening) assert.deepEqual(m.address, address, "a worker's server.address() is the group's");
          const tls = { port: address.port, host: '::1', tls: true, ca: readFileSync(cert), servername: 'localhost' };
          const got = await Promise.all(Array.from({ length: 40 }, () => info(tls)));
          const pids = new Set(got.map((r) => r.pid as number));
          assert.deepEqual(
            [...pids].sort(),
            listening.map((m) => m.pid as number).sort(),
            'both workers served (a chance of 2^-39 otherwise)',
          );
        } finally {
          const workers = Object.values(cluster.workers ?? {});
          await primary.close();
          for (const w of workers) w?.process.kill('SIGKILL');
          await Promise.all(workers.map((w) => new Promise((r) => (w!.isDead() ? r(null) : w!.once('exit', r)))));
        }
      });
    } finally {
      cluster.off('message', onMessage);
      dir.cleanup();
    }
  });

  it('the primary closing ends the workers’ servers; a server closed before the answer stays closed; bad arguments throw before anything opens', async () => {
    const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false });
    const w = startChild(primary.env, ['http']);
    await message(w, (m) => m.listening === 'default');
    const closed = message(w, (m) => m.closed === 'default');
    await primary.close();
    await closed;
    w.kill('SIGKILL');
    await exited(w);

    // server.close() before the primary answered serve(): the server stays
    // closed, the worker's channel goes, and serve() works again afterwards.
    const saved0 = process.env.FDPASS_CLUSTER;
    const early = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false });
    try {
      process.env.FDPASS_CLUSTER = early.env.FDPASS_CLUSTER;
      const server = http.createServer();
      let listened = 0;
      server.on('listening', () => listened++);
      const answered = new Promise((r) => early.once('listening', r));
      const channelGone = new Promise<ClusterWorkerExit>((r) => early.once('workerExit', r));
      serve(server);
      server.close();
      await answered;
      const listening = new Promise((r) => server.once('listening', () => r('listening')));
      const first = await Promise.race([channelGone.then(() => 'channel gone'), listening]);
      assert.equal(first, 'channel gone', 'the answer was turned down, the server stayed closed');
      assert.equal(listened, 0, 'no listening event after close()');
      assert.equal(server.listening, false);
      const again = new Promise((r) => server.once('listening', r));
      serve(server);
      await again;
      assert.deepEqual(server.address(), early.address());
      await new Promise((r) => server.close(r));
    } finally {
      await early.close();
      if (saved0 !== undefined) process.env.FDPASS_CLUSTER = saved0;
      else delete process.env.FDPASS_CLUSTER;
    }

    await assert.rejects(ClusterPrimary.start({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(ClusterPrimary.start({ listen: { port: 70000 } }), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(ClusterPrimary.start({ listen: { port: 0, path: '/tmp/x' } }), { code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(ClusterPrimary.start({ listen: { port: 0 }, schedule: 'random' as never }), { code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(ClusterPrimary.start({ listen: { port: 0 }, channel: 42 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(ClusterPrimary.start({ listen: { port: 0 }, channel: 'x'.repeat(200) }), { code: 'ERR_FDPASS_PATH_TOO_LONG' });
    // A fixed channel name is one primary's: a second one with it fails, and opens nothing.
    const named = await ClusterPrimary.start({
      listen: { port: 0, host: '127.0.0.1' },
      setEnv: false,
      channel: `fdpass-test/${process.pid}`,
    });
    try {
      assert.equal(named.env.FDPASS_CLUSTER, `fdpass-test/${process.pid}`);
      await assert.rejects(
        ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false, channel: `fdpass-test/${process.pid}` }),
        {
          code: 'EADDRINUSE',
        },
      );
    } finally {
      await named.close();
    }
    const saved = process.env.FDPASS_CLUSTER;
    delete process.env.FDPASS_CLUSTER;
    try {
      assert.throws(() => serve(http.createServer()), { code: 'ERR_FDPASS_BAD_ENV' });
    } finally {
      if (saved !== undefined) process.env.FDPASS_CLUSTER = saved;
    }
    assert.throws(() => serve({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
    const twice = http.createServer();
    process.env.FDPASS_CLUSTER = 'fdpass-test-nobody-listens-here';
    try {
      const refused = new Promise<Error>((resolve) => twice.once('error', resolve));
      serve(twice);
      assert.throws(() => serve(twice), { code: 'ERR_SERVER_ALREADY_LISTEN' });
      assert.equal(((await refused) as NodeJS.ErrnoException).code, 'ECONNREFUSED', 'no primary: an error event, as listen() gives');
    } finally {
      if (saved !== undefined) process.env.FDPASS_CLUSTER = saved;
      else delete process.env.FDPASS_CLUSTER;
    }
  });
});
