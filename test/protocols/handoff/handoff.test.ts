import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { Handoff } from 'fdpass/handoff';
import { FdServer, FdSocket } from 'fdpass';
import { noLeak, repoRoot, tempDir, until } from '../../helpers.js';
import { exited } from '../../lines.js';
import { startLoad } from './load.js';
import { needs } from '../../tools.js';

const fixture = join(repoRoot, 'build-test', 'test', 'protocols', 'handoff', 'fixtures', 'generation.js');

type Msg = { gen: number; pid: number; event: string; [k: string]: unknown };

/** A forked generation and the messages it sends over IPC. */
class Generation {
  readonly child: ChildProcess;
  readonly messages: Msg[] = [];
  #waiters: { event: string; resolve: (m: Msg) => void }[] = [];
  stderr = '';
  constructor(args: string[]) {
    this.child = fork(fixture, args, { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.on('message', (m: Msg) => {
      this.messages.push(m);
      const i = this.#waiters.findIndex((w) => w.event === m.event);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
    });
  }
  next(event: string, timeoutMs = 30_000): Promise<Msg> {
    const seen = this.messages.find((m) => m.event === event);
    if (seen) return Promise.resolve(seen);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${event} from generation; got ${JSON.stringify(this.messages)}; stderr ${this.stderr}`)),
        timeoutMs,
      );
      const onExit = (): void => {
        setImmediate(() => {
          const m = this.messages.find((x) => x.event === event);
          if (m) return resolve(m);
          clearTimeout(timer);
          reject(new Error(`generation exited before ${event}; got ${JSON.stringify(this.messages)}; stderr ${this.stderr}`));
        });
      };
      this.child.once('exit', onExit);
      this.#waiters.push({
        event,
        resolve: (m) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(m);
        },
      });
    });
  }
  has(event: string): boolean {
    return this.messages.some((m) => m.event === event);
  }
}

function get(opts: http.RequestOptions): Promise<{ gen: number; pid: number }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', path: '/', agent: false, ...opts }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(JSON.parse(body) as { gen: number; pid: number }));
      })
      .on('error', reject);
  });
}

describe('handoff between processes', () => {
  test('under load: 4 generations, 3 restarts, zero failed requests, every in-flight request completed', async () => {
    const t = tempDir();
    const control = t.path('handoff.sock');
    const unixPath = t.path('http.sock');
    const gens: Generation[] = [new Generation([control, '1', 'normal', unixPath])];
    const first = await gens[0]!.next('ready');
    assert.equal(first.inheritedTcp, false);
    const port = first.port as number;
    const tcpLoad = startLoad({ port }, 4, 2);
    const unixLoad = startLoad({ socketPath: unixPath }, 1, 1);
    const held: Promise<{ gen: number; pid: number }>[] = [];
    try {
      for (let g = 2; g <= 4; g++) {
        // Let each generation serve a while under load.
        const before = tcpLoad.result.requests;
        await until(() => tcpLoad.result.requests >= before + 100, `generation ${g - 1} served 100 requests`);
        const old = gens[gens.length - 1]!;
        // One request surely in flight at the handoff: the old generation
        // holds it until it begins to drain, and must answer it then.
        held.push(get({ port, path: '/?hold=1' }));
        await old.next('holding');
        const next = new Generation([control, String(g), 'normal', unixPath]);
        gens.push(next);
        const started = await next.next('started');
        assert.deepEqual(started.inherited, ['http', 'unix']);
        assert.equal(started.predecessor, old.child.pid);
        const ready = await next.next('ready');
        assert.equal(ready.inheritedTcp, true);
        assert.equal(ready.unixInherited, true);
        assert.equal(ready.port, port, 'the same listening socket');
        await old.next('takeover');
        const drained = await old.next('drained');
        assert.deepEqual(drained.args, [{ forced: 0 }], 'nothing cut at the deadline');
        assert.equal(await exited(old.child), 0);
        // The Unix listener's path survived the old process closing its copy.
        assert.ok(lstatSync(unixPath).isSocket());
      }
      const last = gens[gens.length - 1]!;
      const before = tcpLoad.result.requests;
      await until(() => tcpLoad.result.requests >= before + 50, 'the last generation served 50 requests');
      const tcp = await tcpLoad.stop();
      const unix = await unixLoad.stop();
      assert.deepEqual(tcp.errors, []);
      assert.deepEqual(unix.errors, []);
      assert.equal(tcp.failed + unix.failed, 0);
      for (const g of ['1', '2', '3', '4'])
        assert.ok((tcp.byGeneration[g] ?? 0) > 0, `generation ${g} served: ${JSON.stringify(tcp.byGeneration)}`);
      assert.ok(tcp.reused > 0, 'keep-alive connections were reused');
      const inFlight = gens
        .slice(0, 3)
        .map((g) => (g.messages.find((m) => m.event === 'draining')!.args as [{ inFlight: number }])[0].inFlight);
      // Each old generation began to drain with its held request (at least)
      // running, and answered it itself; none was cut (forced: 0 above).
      for (const [i, n] of inFlight.entries()) assert.ok(n >= 1, `generation ${i + 1} drained ${n} in-flight requests: ${inFlight}`);
      assert.deepEqual(
        (await Promise.all(held)).map((r) => r.gen),
        [1, 2, 3],
        'each held request was answered by the generation that held it',
      );
      // A final request lands on the last generation.
      assert.equal((await get({ port })).gen, 4);
      assert.equal((await get({ socketPath: unixPath })).gen, 4);
      last.child.kill('SIGTERM');
      await exited(last.child);
    } finally {
      await tcpLoad.stop();
      await unixLoad.stop();
      for (const g of gens) g.child.kill('SIGKILL');
      t.cleanup();
    }
  });

  test('a new process that crashes before ready: the old one serves on, nothing failed, the next handoff works', async () => {
    const t = tempDir();
    const control = t.path('handoff.sock');
    const g1 = new Generation([control, '1']);
    const gens = [g1];
    const { port } = (await g1.next('ready')) as unknown as { port: number };
    const load = startLoad({ port }, 3, 1);
    try {
      const crash = new Generation([control, '2', 'crash']);
      gens.push(crash);
      assert.deepEqual((await crash.next('started')).inherited, ['http']);
      assert.equal(await exited(crash.child), 'SIGKILL');
      const aborted = await g1.next('aborted');
      assert.match(String((aborted.args as unknown[])[1]), /before it was ready/);
      assert.equal(g1.has('takeover'), false);
      // Still serving, still offering.
      const before = load.result.requests;
      await until(() => load.result.requests >= before + 50, 'generation 1 served 50 more requests');
      assert.equal((await get({ port })).gen, 1);
      const g3 = new Generation([control, '3']);
      gens.push(g3);
      assert.equal((await g3.next('ready')).inheritedTcp, true);
      assert.equal(await exited(g1.child), 0);
      const result = await load.stop();
      assert.deepEqual(result.errors, []);
      assert.equal(result.byGeneration['2'], undefined);
      assert.ok(result.byGeneration['1']! > 0 && result.byGeneration['3']! > 0);
      g3.child.kill('SIGTERM');
      await exited(g3.child);
    } finally {
      await load.stop();
      for (const g of gens) g.child.kill('SIGKILL');
      t.cleanup();
    }
  });

  test('a peer of another uid is refused (SO_PEERCRED), and the old one serves on', needs('root'), async () => {
    const t = tempDir();
    chmodSync(t.dir, 0o755);
    const control = t.path('handoff.sock');
    const g1 = new Generation([control, '1', 'normal', '', '666']);
    try {
      const { port } = (await g1.next('ready')) as unknown as { port: number };
      // uid 65534 may open the socket file (mode 0666) but the server refuses it by its credentials.
      const script = `
        const { Handoff } = await import(${JSON.stringify(join(repoRoot, 'dist', 'protocols', 'handoff', 'index.js'))});
        try { await Handoff.start({ path: ${JSON.stringify(control)}, allow: () => true, exit: false }); console.log('TOOK'); }
        catch (err) { console.log(err.code); }`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        uid: 65534,
        gid: 65534,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      assert.equal(await exited(child), 0, err);
      assert.equal(out.trim(), 'ERR_FDPASS_HANDOFF_REFUSED');
      const refused = await g1.next('refused');
      assert.equal((refused.args as [{ uid: number }])[0].uid, 65534);
      assert.equal(g1.has('takeover'), false);
      assert.equal((await get({ port })).gen, 1);
      // And the client side refuses a predecessor of another uid by default.
      const script2 = script.replace('allow: () => true, ', '');
      const child2 = spawn(process.execPath, ['--input-type=module', '-e', script2], {
        uid: 65534,
        gid: 65534,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out2 = '';
      child2.stdout.on('data', (d: Buffer) => (out2 += d.toString()));
      await exited(child2);
      assert.equal(out2.trim(), 'ERR_FDPASS_HANDOFF_REFUSED');
    } finally {
      g1.child.kill('SIGKILL');
      t.cleanup();
    }
  });
});

describe('Handoff in one process', () => {
  test('first start: nothing inherited, fallback listen, control socket offered; close unlinks it', () =>
    noLeak(async () => {
      const t = tempDir();
      const h = await Handoff.start({ path: t.path('c.sock'), exit: false });
      assert.equal(h.predecessor, null);
      assert.deepEqual(h.inherited, []);
      const server = net.createServer((s) => s.end('hi'));
      assert.equal(await h.listen(server, 'tcp', { port: 0, host: '127.0.0.1' }), false);
      await assert.rejects(h.listen(net.createServer(), 'other'), { code: 'ERR_INVALID_ARG_VALUE' });
      await assert.rejects(h.listen(net.createServer(), 'tcp', 0), { code: 'ERR_INVALID_ARG_VALUE' });
      await h.ready();
      assert.equal(h.state, 'serving');
      assert.ok(lstatSync(t.path('c.sock')).isSocket());
      assert.equal((lstatSync(t.path('c.sock')).mode & 0o777).toString(8), '600');
      // In-process successor (exit: false): takes the listener, the first drains.
      const drained = new Promise((r) => h.once('drained', r));
      const h2 = await Handoff.start({ path: t.path('c.sock'), exit: false });
      assert.deepEqual(h2.inherited, ['tcp']);
      const server2 = net.createServer((s) => s.end('two'));
      assert.equal(await h2.listen(server2, 'tcp'), true);
      assert.deepEqual(server2.address(), server.address());
      await h2.ready();
      assert.deepEqual(await drained, { forced: 0 });
      assert.equal(h.state, 'drained');
      assert.equal(server.listening, false);
      const port = (server2.address() as net.AddressInfo).port;
      const reply = await new Promise<string>((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1');
        let d = '';
        c.on('data', (b) => (d += b.toString()));
        c.on('end', () => resolve(d));
        c.on('error', reject);
      });
      assert.equal(reply, 'two');
      await h2.close();
      assert.equal(existsSync(t.path('c.sock')), false);
      await new Promise((r) => server2.close(r));
      t.cleanup();
    }));

  test('a first start in a folder that does not exist fails at start(), naming the folder', () =>
    noLeak(async () => {
      const t = tempDir();
      try {
        const missing = t.path('no-such-folder');
        await assert.rejects(Handoff.start({ path: join(missing, 'h.sock'), exit: false }), {
          name: 'FdPassError',
          code: 'ENOENT',
          path: missing,
          message: `Handoff.start: the folder ${missing} does not exist (the control socket is ${join(missing, 'h.sock')})`,
        });
      } finally {
        t.cleanup();
      }
    }));

  test('listeners from listenFds-style fds ({ fd }) are offered too; unused inherited fds are closed at ready', () =>
    noLeak(async () => {
      const t = tempDir();
      const seed = net.createServer();
      await new Promise<void>((r) => seed.listen(0, '127.0.0.1', r));
      // What listenFds() gives: a listening fd we own. Duplicate it via a handoff.
      const h0 = await Handoff.start({ path: t.path('c.sock'), exit: false });
      h0.add(seed, 'a');
      const extra = net.createServer();
      await new Promise<void>((r) => extra.listen(0, '127.0.0.1', r));
      h0.add(extra, 'b');
      await h0.ready();
      const h1 = await Handoff.start({ path: t.path('c.sock'), exit: false });
      const fd = h1.take('a')!;
      assert.equal(typeof fd, 'number');
      const server = net.createServer();
      const h2path = t.path('d.sock');
      const hb = await Handoff.start({ path: h2path, exit: false });
      assert.equal(await hb.listen(server, 'web', { fd }), false);
      assert.deepEqual(server.address(), seed.address());
      await hb.ready();
      const drained = new Promise((r) => h0.once('drained', r));
      await h1.ready(); // closes the unused 'b' fd; h0 drains
      await hb.close();
      await new Promise((r) => server.close(r));
      await drained;
      assert.equal(seed.listening, false);
      assert.equal(extra.listening, false);
      await h1.close();
      t.cleanup();
    }));

  test("add({ fd }): a listening socket offered as it is (a ClusterPrimary's); it stays its owner's through the drain; a non-listening fd or a used name is refused", () =>
    noLeak(async () => {
      const t = tempDir();
      const seed = net.createServer();
      await new Promise<void>((r) => seed.listen(0, '127.0.0.1', r));
      const owned = (seed as unknown as { _handle: { fd: number } })._handle.fd;
      const h0 = await Handoff.start({ path: t.path('c.sock'), exit: false });
      const [a, b] = FdSocket.pair();
      assert.throws(() => h0.add({ fd: a.fd }, 'x'), { code: 'ERR_FDPASS_BAD_SOCKET', message: /is not a listening socket/ });
      assert.throws(() => h0.add({ fd: -1 }, 'x'), RangeError);
      h0.add({ fd: owned }, 'raw');
      assert.throws(() => h0.add({ fd: owned }, 'raw'), { code: 'ERR_INVALID_ARG_VALUE', message: /already in use/ });
      await h0.ready();
      const drained = new Promise((r) => h0.once('drained', r));
      const h1 = await Handoff.start({ path: t.path('c.sock'), exit: false });
      const taken = new net.Server();
      assert.equal(await h1.listen(taken, 'raw'), true);
      assert.deepEqual(taken.address(), seed.address(), 'the same socket');
      await h1.ready();
      await drained;
      assert.equal(seed.listening, true, "an fd offered as it is stays its owner's to close");
      await new Promise((r) => seed.close(r));
      await new Promise((r) => taken.close(r));
      await a.close();
      await b.close();
      await h1.close();
      t.cleanup();
    }));
});

describe('Handoff.start and AbortSignal', () => {
  test('an aborted signal stops waiting for the predecessor: AbortError, nothing leaked', () =>
    noLeak(async () => {
      const t = tempDir();
      const path = t.path('abort.sock');
      // A "predecessor" that accepts and never offers.
      const silent = await FdServer.listen({ path, type: 'seqpacket' });
      const held: FdSocket[] = [];
      const ac = new AbortController();
      // Aborted once it waits: the predecessor has its connection.
      silent.on('connection', (s) => {
        held.push(s);
        ac.abort();
      });
      const started = Handoff.start({ path, signal: ac.signal, exit: false });
      await assert.rejects(started, { name: 'AbortError' });
      await assert.rejects(Handoff.start({ path, signal: 'no' as never }), { name: 'TypeError' });
      await Promise.all(held.map((s) => s.close()));
      await silent.close();
      t.cleanup();
    }));
});
