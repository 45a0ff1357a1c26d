// Peer death at every step: a python3 peer (test/peers/dying_peer.py) walks a
// conversation up to one step, says so on stdout, and is SIGKILLed right
// there while our side waits: in connect, in recv/recvFd/the iterator, in a
// send held by backpressure, in the middle of a message that carries fds, in
// a runc listener's handshake, at each step of a handoff (both roles). Every
// pending operation settles with the exact outcome written here (null, a
// value, or an FdPassError whose code is documented), nothing hangs (test
// timeouts), and /proc/self/fd is back at its baseline (noLeak).
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, lstatSync, openSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { ErrorCodes, FdPassError, FdServer, FdSocket } from 'fdpass';
import type { FdSocket as FdSocketType } from 'fdpass';
import { listenConsoleSocket, listenSeccompAgent, sendConsole } from 'fdpass/runc';
import { FdStream } from 'fdpass/stream';
import { Handoff } from 'fdpass/handoff';
import { ioTurns, noLeak, repoRoot, tempDir, until } from '../helpers.js';
import { JsonLines, exited, type Json } from '../lines.js';
import { needs } from '../tools.js';

const peerScript = join(repoRoot, 'test', 'peers', 'dying_peer.py');
const TIMEOUT = { timeout: 30_000 };
const documented = new Set<string>(Object.values(ErrorCodes));

interface Peer {
  child: ChildProcess;
  lines: JsonLines;
  /** The line the peer prints once it reached its step. */
  ready: () => Promise<Json>;
  /** SIGKILL it now and wait until it is gone. */
  kill: () => Promise<void>;
}

// What a failed test left behind (peers alive, servers open) must not keep
// the file's process alive until the runner's timeout.
const leftovers = new Set<() => Promise<void>>();
afterEach(async () => {
  for (const f of [...leftovers]) await f().catch(() => undefined);
  leftovers.clear();
});

/** Run `cleanup` at the end of the test, or after it if it failed first. */
function atEnd(cleanup: () => Promise<void>): () => Promise<void> {
  let done = false;
  const once = async (): Promise<void> => {
    if (done) return;
    done = true;
    leftovers.delete(once);
    await cleanup();
  };
  leftovers.add(once);
  return once;
}

function startPeer(step: string, path: string): Peer {
  const child = spawn('python3', [peerScript, step, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  atEnd(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited(child);
  });
  const lines = new JsonLines(child);
  return {
    child,
    lines,
    ready: () => lines.event('event', 'ready', 20_000),
    kill: async () => {
      child.kill('SIGKILL');
      assert.equal(await exited(child), 'SIGKILL', `the peer died at its step (stderr: ${lines.stderr})`);
    },
  };
}

/**
 * The promise has not settled after two polls of the I/O core (ioTurns):
 * had the peer's socket said anything yet, it would have by then.
 */
async function assertPending(p: Promise<unknown>, what: string): Promise<void> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await ioTurns();
  assert.equal(settled, false, `${what} is pending when the peer dies`);
}

/** The rejection's code, checked to be a coded FdPassError (a documented ERR_FDPASS_* or an errno name). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FdPassError && typeof e.code === 'string', `a coded FdPassError, got ${String(e)}`);
    if (e.code.startsWith('ERR_')) assert.ok(documented.has(e.code), `${e.code} is documented`);
    else assert.match(e.code, /^E[A-Z]+$/);
    return e.code;
  }
  assert.fail('expected a rejection');
}

/** Our server, a peer connected to it at `step`, and our side of the connection. */
async function connected(step: string): Promise<{ peer: Peer; conn: FdSocketType; done: () => Promise<void> }> {
  const t = tempDir();
  const server = await FdServer.listen(t.path('s'));
  const peer = startPeer(step, t.path('s'));
  const conn = await server.accept();
  await peer.ready();
  return {
    peer,
    conn,
    done: atEnd(async () => {
      await conn.close();
      await server.close();
      t.cleanup();
    }),
  };
}

type Op = 'recv' | 'recvFd' | 'iterator';

/** Start the operation; its outcome as a comparable value (fds closed on the way). */
function start(conn: FdSocketType, op: Op, it: AsyncIterator<{ data: Buffer; fds: number[] }>): Promise<unknown> {
  const message = (m: { data: Buffer; fds: number[] }): unknown => {
    m.fds.forEach((fd) => closeSync(fd));
    return { data: m.data.toString(), fds: m.fds.length };
  };
  if (op === 'recv') return conn.recv().then((m) => (m === null ? null : message(m)));
  if (op === 'recvFd') {
    return conn.recvFd().then(
      (m) => {
        closeSync(m.fd);
        return { name: m.name };
      },
      async (e: unknown) => ({ code: await codeOf(Promise.reject(e)) }),
    );
  }
  return it.next().then((r) => (r.done ? 'done' : message(r.value)));
}

describe('peer death at every step', needs('python3'), () => {
  test('while connect waits for room in the backlog: ECONNREFUSED', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const peer = startPeer('fill-backlog', t.path('full'));
      const line = await peer.ready();
      assert.ok((line.queued as number) >= 1);
      const connecting = FdSocket.connect(t.path('full'));
      await assertPending(connecting, 'connect');
      await peer.kill();
      assert.equal(await codeOf(connecting), 'ECONNREFUSED');
      t.cleanup();
    }),
  );

  // What each operation gets when the peer dies after connecting, after data
  // without fds, and after the first chunk of a message that carries fds:
  // first what the peer sent, then (pending when it dies) the end.
  const expected: Record<string, Record<Op, unknown[]>> = {
    connect: {
      recv: [null, null],
      recvFd: [{ code: 'ERR_FDPASS_EOF' }, { code: 'ERR_FDPASS_EOF' }],
      iterator: ['done'],
    },
    data: {
      recv: [{ data: 'hello', fds: 0 }, null, null],
      recvFd: [{ code: 'ERR_FDPASS_NO_FD' }, { code: 'ERR_FDPASS_EOF' }, { code: 'ERR_FDPASS_EOF' }],
      iterator: [{ data: 'hello', fds: 0 }, 'done'],
    },
    'half-fds': {
      recv: [{ data: 'HEAD', fds: 3 }, null, null],
      recvFd: [{ code: 'ERR_FDPASS_TOO_MANY_FDS' }, { code: 'ERR_FDPASS_EOF' }, { code: 'ERR_FDPASS_EOF' }],
      iterator: [{ data: 'HEAD', fds: 3 }, 'done'],
    },
  };
  for (const [step, ops] of Object.entries(expected)) {
    for (const [op, outcomes] of Object.entries(ops) as [Op, unknown[]][]) {
      test(`${step}: a pending ${op} settles when the peer dies`, TIMEOUT, () =>
        noLeak(async () => {
          const { peer, conn, done } = await connected(step);
          const it = conn[Symbol.asyncIterator]();
          const got: unknown[] = [];
          // What the peer sent before its step arrives while it lives.
          const sentBefore = outcomes.length - (op === 'iterator' ? 1 : 2);
          for (let i = 0; i < sentBefore; i++) got.push(await start(conn, op, it));
          const pending = start(conn, op, it);
          await assertPending(pending, op);
          await peer.kill();
          got.push(await pending);
          // And after: the end again (the iterator is done once).
          if (op !== 'iterator') got.push(await start(conn, op, it));
          assert.deepEqual(got, outcomes);
          await done();
        }),
      );
    }
  }

  test('sends held by backpressure (the peer never reads): EPIPE; the fds in flight are released', TIMEOUT, () =>
    noLeak(async () => {
      const { peer, conn, done } = await connected('connect');
      // The fd sent is one end of a socketpair: its other end sees end of
      // file only once no copy of it is left anywhere, in flight included.
      const [sent, watch] = FdSocket.pair('stream');
      const fd = sent.fd;
      const chunk = Buffer.alloc(64 * 1024, 1);
      const outcomes: string[] = [];
      const sends: Promise<void>[] = [];
      const track = (p: Promise<void>): void => {
        sends.push(
          p.then(
            () => void outcomes.push('ok'),
            async (e: unknown) => void outcomes.push(await codeOf(Promise.reject(e))),
          ),
        );
      };
      for (let i = 0; i < 1000 && conn.pendingSends < 4; i++) track(conn.send(chunk, [fd]));
      assert.equal(conn.pendingSends, 4, 'sends wait for room the kernel does not have');
      await ioTurns(); // the core polled: had room come, a send would have gone
      const before = outcomes.length;
      assert.equal(conn.pendingSends, 4, 'still waiting');
      await peer.kill();
      await Promise.all(sends);
      const failed = outcomes.slice(before);
      assert.deepEqual(failed, ['EPIPE', 'EPIPE', 'EPIPE', 'EPIPE']);
      assert.equal(await codeOf(conn.send('x')), 'EPIPE');
      // The peer died with our data unread: a receive learns it as ECONNRESET, once.
      assert.equal(await codeOf(conn.recv()), 'ECONNRESET');
      assert.equal(await conn.recv(), null);
      await sent.close();
      // The copies that sat in the dead peer's receive queue are gone with it.
      assert.equal(await watch.recv(), null);
      await watch.close();
      await done();
    }),
  );

  test('an FdStream in the middle of a message that carries fds: the partial message and its fds, then the end', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const server = await FdServer.listen(t.path('s'));
      atEnd(() => server.close());
      const peer = startPeer('half-fds', t.path('s'));
      const stream = FdStream.fromSocket(await server.accept());
      atEnd(async () => void stream.destroy());
      await peer.ready();
      const reads: unknown[] = [];
      const ended = new Promise((res) => stream.once('end', res));
      const closed = new Promise((res) => stream.once('close', res));
      stream.on('readable', () => {
        let m;
        while ((m = stream.read(16, null)) !== null) {
          reads.push({ data: m.data!.toString(), fds: m.fds.length });
          m.fds.forEach((fd) => closeSync(fd));
        }
      });
      await until(() => stream.readableLength >= 4, 'the first 4 bytes of the message buffered');
      assert.deepEqual(reads, [], 'not a whole message yet');
      assert.equal(stream.pendingFds, 0, 'the fds wait with their bytes until those are read');
      await peer.kill();
      await ended;
      await closed;
      // The 16-byte message never completed: at the end, read() hands out the 4 bytes and their 3 fds.
      assert.deepEqual(reads, [{ data: 'HEAD', fds: 3 }]);
      assert.equal(stream.destroyed, true);
      await server.close();
      t.cleanup();
    }),
  );

  test('an FdStream destroyed with the fds of a half message unread: they are closed', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const server = await FdServer.listen(t.path('s'));
      atEnd(() => server.close());
      const peer = startPeer('half-fds', t.path('s'));
      const stream = FdStream.fromSocket(await server.accept());
      atEnd(async () => void stream.destroy());
      await peer.ready();
      stream.once('readable', () => undefined);
      await until(() => stream.readableLength >= 4, 'the first 4 bytes of the message and its 3 fds buffered');
      await peer.kill();
      await ioTurns(); // the core runs what the death made ready, if anything reads
      stream.destroy();
      await new Promise((res) => stream.once('close', res));
      await server.close();
      t.cleanup();
    }),
  );

  test('runc console listener mid-handshake: ERR_FDPASS_EOF, and it goes on', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const listener = await listenConsoleSocket(t.path('console'));
      atEnd(() => listener.close());
      const errors: string[] = [];
      const error = new Promise<void>((res) =>
        listener.on('error', (e) => {
          errors.push(e.code);
          res();
        }),
      );
      const peer = startPeer('connect', listener.path);
      await peer.ready();
      const next = listener.next();
      await assertPending(next, 'listener.next()');
      await peer.kill();
      await error;
      assert.deepEqual(errors, ['ERR_FDPASS_EOF']);
      assert.ok(documented.has(errors[0]!));
      // The same pending next() gets the next good console.
      const fd = openSync('/dev/null', 'r');
      await sendConsole(listener.path, '/dev/pts/ptmx', fd);
      closeSync(fd);
      const value = await next;
      assert.equal(value?.name, '/dev/pts/ptmx');
      closeSync(value!.fd);
      await listener.close();
      t.cleanup();
    }),
  );

  test('runc seccomp agent mid-state (first bytes and the fd sent): ERR_FDPASS_BAD_MESSAGE, its fd closed', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const agent = await listenSeccompAgent(t.path('agent'));
      atEnd(() => agent.close());
      const error = new Promise<string>((res) => agent.once('error', (e) => res(e.code)));
      const peer = startPeer('seccomp-half', agent.path);
      await peer.ready();
      await peer.kill();
      assert.equal(await error, 'ERR_FDPASS_BAD_MESSAGE');
      await agent.close();
      t.cleanup();
    }),
  );
});

describe('peer death during a handoff', needs('python3'), () => {
  /** A serving first generation on an HTTP listener; the dying peer is its successor. */
  async function serving(): Promise<{ first: Handoff; server: http.Server; control: string; cleanup: () => Promise<void> }> {
    const t = tempDir();
    const control = t.path('handoff.sock');
    const first = await Handoff.start({ path: control, exit: false });
    const server = http.createServer((req, res) => res.end('one'));
    await first.listen(server, 'http', { port: 0, host: '127.0.0.1' });
    await first.ready();
    return {
      first,
      server,
      control,
      cleanup: atEnd(async () => {
        await first.close();
        if (server.listening) await new Promise((res) => server.close(res));
        t.cleanup();
      }),
    };
  }

  /** A real successor takes over from `first`: the handoff still works. */
  async function realSuccessor(first: Handoff, control: string): Promise<void> {
    const drained = new Promise((res) => first.once('drained', res));
    const second = await Handoff.start({ path: control, exit: false });
    atEnd(() => second.close());
    assert.deepEqual(second.inherited, ['http']);
    const server2 = http.createServer((req, res) => res.end('two'));
    atEnd(async () => void server2.close());
    assert.equal(await second.listen(server2, 'http'), true);
    await second.ready();
    assert.deepEqual(await drained, { forced: 0 });
    await second.close();
    await new Promise((res) => server2.close(res));
  }

  for (const [step, reason] of [
    ['h-connected', 'closed the connection before it was ready'],
    ['h-took', 'closed the connection before it was ready'],
    ['h-renamed', 'closed the connection before it was ready'],
  ] as const) {
    test(`the successor dies at ${step}: 'aborted', we keep serving and a real successor still takes over`, TIMEOUT, () =>
      noLeak(async () => {
        const { first, control, cleanup } = await serving();
        const ourIno = lstatSync(control).ino;
        const aborted = new Promise<string>((res) => first.once('aborted', (_peer, r) => res(r)));
        const peer = startPeer(step, control);
        const line = await peer.ready();
        if (step === 'h-took') assert.deepEqual([(line.offer as Json).names, line.fds], [['http'], 1]);
        if (step === 'h-renamed') assert.notEqual(lstatSync(control).ino, ourIno, 'the successor took the path');
        if (step !== 'h-connected') assert.equal(first.state, 'offering');
        await peer.kill();
        assert.equal(await aborted, reason);
        assert.equal(first.state, 'serving');
        // Our control socket answers at the path again (taken back after h-renamed).
        assert.equal(lstatSync(control).ino === ourIno, step !== 'h-renamed');
        await realSuccessor(first, control);
        await cleanup();
      }),
    );
  }

  test('the successor dies right after ready: we drain and let go, as the protocol says', TIMEOUT, () =>
    noLeak(async () => {
      const { first, control, cleanup } = await serving();
      const takeover = new Promise((res) => first.once('takeover', res));
      const drained = new Promise((res) => first.once('drained', res));
      const peer = startPeer('h-ready', control);
      await peer.ready();
      await peer.kill();
      await takeover;
      assert.deepEqual(await drained, { forced: 0 });
      assert.equal(first.state, 'drained');
      await cleanup();
    }),
  );

  test('the running generation dies before its offer: start() rejects with ERR_FDPASS_HANDOFF_REFUSED', TIMEOUT, () =>
    noLeak(async () => {
      const t = tempDir();
      const control = t.path('handoff.sock');
      const peer = startPeer('o-accepted', control);
      await peer.lines.event('event', 'listening');
      const starting = Handoff.start({ path: control, exit: false });
      const line = await peer.ready();
      assert.equal((line.take as Json).op, 'take');
      await assertPending(starting, 'Handoff.start');
      await peer.kill();
      assert.equal(await codeOf(starting), 'ERR_FDPASS_HANDOFF_REFUSED');
      // Its socket file is stale now: the next start is a first start.
      const again = await Handoff.start({ path: control, exit: false });
      assert.equal(again.predecessor, null);
      await again.close();
      t.cleanup();
    }),
  );

  for (const step of ['o-offered', 'o-ready'] as const) {
    test(`the running generation dies at ${step}: we keep its listener and serve on it`, TIMEOUT, () =>
      noLeak(async () => {
        const t = tempDir();
        const control = t.path('handoff.sock');
        const peer = startPeer(step, control);
        await peer.lines.event('event', 'listening');
        const handoff = await Handoff.start({ path: control, exit: false });
        atEnd(() => handoff.close());
        assert.deepEqual(handoff.inherited, ['http']);
        const server = http.createServer((req, res) => res.end('inherited'));
        atEnd(async () => void server.close());
        assert.equal(await handoff.listen(server, 'http'), true);
        let line: Json;
        if (step === 'o-offered') {
          line = await peer.ready();
          await peer.kill();
          await handoff.ready();
        } else {
          const ready = handoff.ready();
          line = await peer.ready();
          assert.deepEqual(line.got, { op: 'ready' });
          await assertPending(ready, 'ready()');
          await peer.kill();
          await ready;
        }
        assert.equal(handoff.state, 'serving');
        const body = await new Promise<string>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port: line.port as number, path: '/', agent: false }, (res) => {
              let b = '';
              res.on('data', (d: Buffer) => (b += d.toString()));
              res.on('end', () => resolve(b));
            })
            .on('error', reject);
        });
        assert.equal(body, 'inherited');
        await handoff.close();
        await new Promise((res) => server.close(res));
        t.cleanup();
      }),
    );
  }
});
