// Fuzzing peer against every receiving API: recv, recvFd, the async
// iterator (stream, seqpacket, dgram), the runc console, pidfd and seccomp
// agent listeners, the handoff control socket, and notify/notifyBarrier
// against a hostile service manager.
// test/peers/fuzz_peer.py sends a seeded storm (0..64 KiB payloads, 0..253 fds
// of every kind, two SCM_RIGHTS in one message, SCM_CREDENTIALS, connections
// that vanish or close mid-message) and then one good message. Every outcome
// must be a message or an FdPassError with a string code, the process stays
// up, /proc/self/fd returns to its baseline, and the good message arrives
// intact. FDPASS_FUZZ_SEED replays a run.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FdServer, FdSocket, FdPassError } from 'fdpass';
import type { FdSocket as FdSocketType, RecvOptions, SocketType } from 'fdpass';
import { listenConsoleSocket, listenPidfdSocket, listenSeccompAgent } from 'fdpass/runc';
import { Handoff } from 'fdpass/handoff';
import { notify, notifyBarrier, removeStoredFds, storeFds } from 'fdpass/systemd';
import http from 'node:http';
import { delay, noLeak, repoRoot, tempDir } from '../helpers.js';
import { JsonLines, exited } from '../lines.js';
import { needs } from '../tools.js';

const baseSeed = Number(process.env.FDPASS_FUZZ_SEED ?? Date.now() % 1_000_000);
const LAST = 'LAST-GOOD';

interface PeerRun {
  done: Promise<{ sent: number; errors: Record<string, number>; conns: number }>;
}

const fuzzPeer = join(repoRoot, 'test', 'peers', 'fuzz_peer.py');

function runPeer(path: string, type: SocketType, seed: number, conns: number, msgs: number, last: string, flavour?: string): PeerRun {
  const child = spawn('python3', [fuzzPeer, path, type, String(seed), String(conns), String(msgs), last, ...(flavour ? [flavour] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ sent: number; errors: Record<string, number>; conns: number }>((resolve, reject) => {
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out) as { sent: number; errors: Record<string, number>; conns: number });
      else reject(new Error(`fuzz_peer (seed ${seed}) exited ${code}: ${err}`));
    });
  });
  return { done };
}

function readAll(fd: number): string {
  const buf = Buffer.alloc(64);
  const n = readSync(fd, buf, 0, 64, 0);
  return buf.subarray(0, n).toString();
}

function assertCoded(e: unknown, where: string): asserts e is FdPassError {
  if (!(e instanceof FdPassError) || typeof e.code !== 'string' || e.code.length === 0) {
    assert.fail(`${where}: not a coded FdPassError: ${String(e)}`);
  }
}

/**
 * Receive limits in turn, so truncation paths run too; none of them cuts the
 * good message (9 bytes, one fd), which may come at any turn.
 */
function limits(n: number): RecvOptions {
  const options: RecvOptions[] = [
    {},
    { maxFds: 1 },
    { maxBytes: 16 },
    { maxBytes: 9, maxFds: 1 },
    { maxFds: 253 },
    { maxBytes: 4096, maxFds: 2 },
  ];
  return options[n % options.length];
}

type Mode = 'recv' | 'recvFd' | 'iter';

/**
 * Drain one connection with one API. Returns the good message's fd content
 * when it came on this connection.
 */
async function drain(sock: FdSocketType, mode: Mode, counter: { outcomes: number; errors: Map<string, number> }): Promise<string | null> {
  let good: string | null = null;
  const onError = (e: unknown): void => {
    assertCoded(e, mode);
    counter.errors.set(e.code, (counter.errors.get(e.code) ?? 0) + 1);
    counter.outcomes++;
  };
  const onMessage = (data: Buffer | string, fds: number[]): void => {
    counter.outcomes++;
    if (data.toString() === LAST && fds.length === 1) good = readAll(fds[0]);
    for (const fd of fds) closeSync(fd);
  };
  if (mode === 'iter') {
    try {
      for await (const m of sock) onMessage(m.data, m.fds);
    } catch (e) {
      onError(e);
    }
    return good;
  }
  for (let i = 0; i < 10_000; i++) {
    try {
      if (mode === 'recv') {
        const m = await sock.recv(limits(i));
        if (m === null) break;
        onMessage(m.data, m.fds);
      } else {
        const m = await sock.recvFd();
        onMessage(m.name, [m.fd]);
      }
    } catch (e) {
      onError(e);
      const code = (e as FdPassError).code;
      // End of file, a closed or failed socket: nothing more will come.
      if (code === 'ERR_FDPASS_EOF' || code === 'ERR_FDPASS_CLOSED' || !code.startsWith('ERR_FDPASS_')) break;
    }
  }
  return good;
}

/** Resolves once flag() is true, checking at every message outcome. */
function goodArrived(): { promise: Promise<string>; set: (v: string) => void } {
  let set!: (v: string) => void;
  const promise = new Promise<string>((resolve) => (set = resolve));
  return { promise, set };
}

/** A seeded generator in [0, 1) (mulberry32), so that FDPASS_FUZZ_SEED replays our side too. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))),
  ]);
}

describe('fuzzing peer', needs('python3'), () => {
  for (const type of ['stream', 'seqpacket'] as const) {
    test(`${type}: recv, recvFd and the iterator survive the storm`, () =>
      noLeak(async () => {
        const t = tempDir();
        const seed = baseSeed + (type === 'stream' ? 1 : 2);
        const server = await FdServer.listen({ path: t.path('s'), type });
        const counter = { outcomes: 0, errors: new Map<string, number>() };
        const modes: Mode[] = ['recv', 'recvFd', 'iter'];
        const good = goodArrived();
        const drains: Promise<void>[] = [];
        const accepting = (async () => {
          let n = 0;
          for await (const sock of server) {
            const mode = modes[n++ % modes.length];
            drains.push(
              drain(sock, mode, counter).then(async (g) => {
                if (g !== null) good.set(g);
                await sock.close();
              }),
            );
          }
        })();
        const peer = runPeer(server.path as string, type, seed, 400, 6, LAST);
        const stats = await peer.done;
        const content = await withTimeout(good.promise, 30_000, `seed ${seed}: the good message`);
        await server.close();
        await accepting;
        await Promise.all(drains);
        t.cleanup();
        assert.equal(content, 'intact', `seed ${seed}: the last good message arrived intact`);
        assert.ok(stats.sent > 0 && counter.outcomes > 0, `seed ${seed}: the storm happened (${JSON.stringify(stats)})`);
      }));
  }

  test('dgram: recv on a bound datagram socket survives the storm', () =>
    noLeak(async () => {
      const t = tempDir();
      const seed = baseSeed + 3;
      const sock = FdSocket.bindDatagram(t.path('d'));
      const peer = runPeer(t.path('d'), 'dgram', seed, 150, 8, LAST);
      const counter = { outcomes: 0, errors: new Map<string, number>() };
      let content: string | null = null;
      for (let i = 0; content === null && i < 100_000; i++) {
        try {
          const m = await withTimeout(sock.recv(limits(i)), 30_000, `seed ${seed}: a datagram`);
          assert.ok(m !== null);
          counter.outcomes++;
          if (m.data.toString() === LAST && m.fds.length === 1) content = readAll(m.fds[0]);
          for (const fd of m.fds) closeSync(fd);
        } catch (e) {
          assertCoded(e, 'dgram recv');
          counter.outcomes++;
        }
      }
      await peer.done;
      await sock.close();
      t.cleanup();
      assert.equal(content, 'intact', `seed ${seed}`);
    }));

  for (const which of ['console', 'pidfd'] as const) {
    test(`runc ${which} listener: every bad connection is a coded 'error', the good one a value`, () =>
      noLeak(async () => {
        const t = tempDir();
        const seed = baseSeed + (which === 'console' ? 4 : 5);
        const name = which === 'console' ? LAST : 'standard';
        const listener = which === 'console' ? await listenConsoleSocket(t.path('r')) : await listenPidfdSocket(t.path('r'));
        const errors = new Map<string, number>();
        listener.on('error', (e) => {
          assertCoded(e, `${which} listener`);
          errors.set(e.code, (errors.get(e.code) ?? 0) + 1);
        });
        const peer = runPeer(listener.path, 'stream', seed, 300, 3, name);
        let content: string | null = null;
        let values = 0;
        const reading = (async () => {
          for await (const v of listener) {
            values++;
            const fd = 'pidfd' in v ? v.pidfd : v.fd;
            const label = 'pidfd' in v ? v.kind : v.name;
            if (label === name && content === null) {
              try {
                content = readAll(fd);
              } catch {
                // a storm value that happens to carry the name: not the memfd
              }
              if (content !== 'intact') content = null;
            }
            closeSync(fd);
            if (content !== null) break;
          }
        })();
        await peer.done;
        await withTimeout(reading, 30_000, `seed ${seed}: the good ${which} message`);
        await listener.close();
        t.cleanup();
        assert.equal(content, 'intact', `seed ${seed}`);
        assert.ok(values + [...errors.values()].reduce((a, b) => a + b, 0) > 1, `seed ${seed}: the storm happened`);
      }));
  }

  test('runc seccomp agent listener: every bad connection is a coded error, valid states are values, the good one intact', (ctx) =>
    noLeak(async () => {
      const t = tempDir();
      const seed = baseSeed + 7;
      const goodState = {
        ociVersion: '1.0.2',
        fds: ['seccompFd'],
        pid: 1,
        metadata: LAST,
        state: { ociVersion: '1.0.2', id: LAST, status: 'creating', pid: 1, bundle: '/b' },
      };
      // A small maxStateBytes and timeout, so that both limits are hit by the storm.
      const agent = await listenSeccompAgent(t.path('agent'), { maxStateBytes: 32 * 1024, timeout: 1000 });
      const errors = new Map<string, number>();
      agent.on('error', (e) => {
        assertCoded(e, 'seccomp agent');
        errors.set(e.code, (errors.get(e.code) ?? 0) + 1);
      });
      const peer = runPeer(agent.path, 'stream', seed, 300, 3, JSON.stringify(goodState), 'seccomp');
      let content: string | null = null;
      let values = 0;
      const reading = (async () => {
        for await (const v of agent) {
          values++;
          assert.equal(Object.keys(v.fds).length, v.state.fds.length, `seed ${seed}: one fd per name`);
          if (v.state.state.id === LAST) content = readAll(v.fds.seccompFd!);
          for (const fd of Object.values(v.fds)) closeSync(fd);
          if (content !== null) break;
        }
      })();
      const stats = await peer.done;
      await withTimeout(reading, 30_000, `seed ${seed}: the good state`);
      await agent.close();
      t.cleanup();
      ctx.diagnostic(`seed ${seed}: ${values} values, errors ${JSON.stringify(Object.fromEntries(errors))}, peer ${JSON.stringify(stats)}`);
      assert.equal(content, 'intact', `seed ${seed}`);
      // The storm reached the state checks, not only the transport.
      assert.ok(values > 1, `seed ${seed}: valid states from the storm were values (${values})`);
      assert.ok(
        (errors.get('ERR_FDPASS_BAD_MESSAGE') ?? 0) > 0 && (errors.get('ERR_FDPASS_FD_COUNT_MISMATCH') ?? 0) > 0,
        `seed ${seed}: bad states were refused: ${JSON.stringify([...errors])} (${JSON.stringify(stats)})`,
      );
    }));

  test('systemd notify: notify, storeFds and notifyBarrier against a hostile manager; the last good message arrives intact', (ctx) =>
    noLeak(async () => {
      const t = tempDir();
      const seed = baseSeed + 8;
      const path = t.path('notify');
      const manager = spawn('python3', [fuzzPeer, path, 'notify', String(seed), '0', '4', LAST], { stdio: ['ignore', 'pipe', 'pipe'] });
      const lines = new JsonLines(manager);
      const saved = process.env.NOTIFY_SOCKET;
      // Fds of several kinds to send: a file, /dev/null, both ends of a socketpair, a listening socket.
      writeFileSync(t.path('good'), 'intact');
      const good = openSync(t.path('good'), 'r');
      const [pa, pb] = FdSocket.pair('stream');
      const listening = await FdServer.listen(t.path('srv'));
      const pool = [good, openSync('/dev/null', 'r'), pa.fd, pb.fd, listening.fd];
      const outcomes = new Map<string, number>();
      const count = (k: string): void => void outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
      try {
        await lines.event('event', 'ready');
        process.env.NOTIFY_SOCKET = path;
        const rand = rng(seed);
        let holding: AbortController | null = null;
        lines.onLine((j) => {
          if (j.event === 'held') holding?.abort();
        });
        const keys = ['READY', 'STATUS', 'ERRNO', 'MAINPID', 'WATCHDOG', 'RELOADING', 'STOPPING', 'X_FUZZ'];
        const randomState = (): string => {
          if (rand() < 0.3) {
            // Raw text of any code points, newlines included.
            let s = '';
            const n = 1 + Math.floor(rand() * 2000);
            for (let i = 0; i < n; i++) s += String.fromCodePoint(1 + Math.floor(rand() * 0x2fff));
            return s;
          }
          const lines: string[] = [];
          for (let i = 0, n = 1 + Math.floor(rand() * 6); i < n; i++) {
            lines.push(`${keys[Math.floor(rand() * keys.length)]}=${'v'.repeat(Math.floor(rand() * 600))}`);
          }
          return lines.join('\n');
        };
        const randomFds = (): number[] => {
          const n = [0, 0, 1, 2, Math.floor(rand() * 254)][Math.floor(rand() * 5)]!;
          return Array.from({ length: n }, () => pool[Math.floor(rand() * pool.length)]!);
        };
        const attempt = async (p: () => Promise<boolean>, signal?: AbortSignal): Promise<void> => {
          try {
            assert.equal(await p(), true);
            count('ok');
          } catch (e) {
            if (signal?.aborted && (e as Error).name === 'AbortError') return count('aborted as held');
            assertCoded(e, 'notify');
            count(e.code);
            // The manager is restarting: give it a moment, as a real sender would.
            if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') await delay(5);
          }
        };
        for (let i = 0; i < 400; i++) {
          const op = rand();
          if (op < 0.6) {
            let state = randomState();
            while (Buffer.byteLength(state) > 4096) state = state.slice(0, state.length >> 1);
            await attempt(() => notify(state, randomFds()));
          } else if (op < 0.8) {
            // A barrier the manager holds ends when it says so ("held"), by
            // the signal: no time budget decides any barrier's outcome.
            holding = new AbortController();
            const signal = holding.signal;
            await attempt(() => notifyBarrier({ timeout: 60_000, signal }), signal);
            holding = null;
          } else if (op < 0.9) await attempt(() => storeFds(`fuzz${i}`, [pool[i % pool.length]!], { poll: rand() < 0.5 }));
          else if (op < 0.95) await attempt(() => removeStoredFds(`fuzz${i}`));
          else await Promise.all([0, 1, 2, 3].map(() => attempt(() => notify('STATUS=concurrent', randomFds()))));
        }
        // The good message (a restart of the manager may lose it: send again until it is seen).
        let last: Record<string, unknown> | null = null;
        for (let i = 0; i < 50 && last === null; i++) {
          await attempt(() => notify(LAST, [good]));
          last = await lines.event('event', 'last', 500).catch(() => null);
        }
        assert.equal(last?.content, 'intact', `seed ${seed}: the last good message arrived intact`);
        // The barrier works as ever after the storm.
        assert.equal(await notifyBarrier({ timeout: 10_000 }), true, `seed ${seed}`);
        const summary = await lines.next((j) => 'received' in j);
        assert.equal(await exited(manager), 0, `seed ${seed}: manager: ${lines.stderr}`);
        ctx.diagnostic(`seed ${seed}: outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, manager ${JSON.stringify(summary)}`);
        const barriers = summary.barriers as Record<string, number>;
        assert.ok(
          (outcomes.get('ok') ?? 0) > 100 && (barriers.held ?? 0) > 0 && (barriers.storm ?? 0) > 0,
          `seed ${seed}: the storm happened: ${JSON.stringify([...outcomes])} ${JSON.stringify(summary)}`,
        );
        // Every barrier the manager held was still waiting when it said so
        // (none resolved on its own), and no other one waited for ever.
        assert.equal(outcomes.get('aborted as held') ?? 0, barriers.held, `seed ${seed}: ${JSON.stringify([...outcomes])}`);
        assert.equal(outcomes.get('ETIMEDOUT'), undefined, `seed ${seed}: ${JSON.stringify([...outcomes])}`);
      } finally {
        if (saved === undefined) delete process.env.NOTIFY_SOCKET;
        else process.env.NOTIFY_SOCKET = saved;
        if (manager.exitCode === null) manager.kill('SIGKILL');
        await exited(manager);
        closeSync(good);
        closeSync(pool[1]!);
        await Promise.all([pa.close(), pb.close(), listening.close()]);
        t.cleanup();
      }
    }));

  test('handoff control socket: a storm of bad peers, then a real successor still takes over', () =>
    noLeak(async () => {
      const t = tempDir();
      const control = t.path('handoff.sock');
      const seed = baseSeed + 6;
      const first = await Handoff.start({ path: control, exit: false });
      const errors: unknown[] = [];
      first.on('error', (e) => errors.push(e));
      const server = http.createServer((req, res) => res.end('one'));
      await first.listen(server, 'http', { port: 0, host: '127.0.0.1' });
      await first.ready();
      // Garbage, fds, half messages and vanishing connections on the control socket.
      const peer = runPeer(control, 'seqpacket', seed, 200, 3, 'x');
      const storm = await peer.done;
      assert.ok(storm.conns >= 100 && storm.sent > 0, `seed ${seed}: the storm happened (${JSON.stringify(storm)})`);
      assert.equal(first.state, 'serving', `seed ${seed}: still serving after the storm`);
      for (const e of errors) assertCoded(e, 'handoff');
      // A real successor takes the listener as if nothing happened.
      const drained = new Promise((res) => first.once('drained', res));
      const second = await Handoff.start({ path: control, exit: false });
      assert.deepEqual(second.inherited, ['http']);
      const server2 = http.createServer((req, res) => res.end('two'));
      assert.equal(await second.listen(server2, 'http'), true);
      await second.ready();
      assert.deepEqual(await drained, { forced: 0 });
      await second.close();
      await new Promise((res) => server2.close(res));
      t.cleanup();
    }));
});
