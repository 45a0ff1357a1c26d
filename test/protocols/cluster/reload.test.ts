// ClusterPrimary.reload() against real workers (test/fixtures/cluster-worker.ts
// as plain child processes) under wrk: every worker replaced, in every
// schedule, keep-alive and Connection: close, 0 failed requests; a
// replacement that crashes or never serves leaves the old workers serving;
// concurrent calls; fd counts before and after.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, fork, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterPrimary } from 'fdpass/cluster';
import type { PrimaryOptions } from 'fdpass/cluster';
import { docBlock, freePort, killAtEnd, noLeak, repoRoot, testDir, until } from '../../helpers.js';
import { needs } from '../../tools.js';
import { get, getText, lines, next, options, started, startWrk } from '../supervisor/helpers.js';

const fixture = join(repoRoot, 'build-test', 'test', 'fixtures', 'cluster-worker.js');
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** A primary whose `fork` starts the fixture with `mode.args` (changed by a test to make replacements fail). */
async function startPrimary(
  schedule: PrimaryOptions['schedule'],
  mode: { args: string[] } = { args: ['http'] },
  names = ['default'],
): Promise<{ primary: ClusterPrimary; port: number; started: ChildProcess[] }> {
  const started: ChildProcess[] = [];
  const primary = await ClusterPrimary.start({
    listen: names.map((name) => ({ name, port: 0, host: '127.0.0.1' })),
    schedule: schedule ?? 'round-robin',
    setEnv: false,
    workers: 2,
    fork: (env) => {
      const child = fork(fixture, mode.args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.add(child);
      child.on('exit', () => children.delete(child));
      started.push(child);
      return child;
    },
  });
  let serving = 0;
  primary.on('listening', () => serving++);
  await until(() => serving === 2 * names.length, 'two workers serving');
  return { primary, port: (primary.address(names[0]) as { port: number }).port, started };
}

/** The sockets listening on TCP `port` (a SO_REUSEPORT group has one per member), from /proc. */
function listeningSockets(port: number): number {
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const row of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      if (f.length > 3 && f[3] === '0A' && parseInt(f[1]!.split(':').at(-1)!, 16) === port) n++;
    }
  }
  return n;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stop(primary: ClusterPrimary, started: ChildProcess[]): Promise<void> {
  await primary.close();
  for (const c of started) c.kill('SIGKILL');
  await Promise.all(started.map(exited));
}

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** A docs block (`code`), written inside the package (so that 'fdpass' resolves to this checkout); removed after the test. */
function blockFile(t: { after: (fn: () => void) => void }, code: string, name: string): string {
  const scratch = join(repoRoot, 'build-test', 'readme');
  mkdirSync(scratch, { recursive: true });
  const file = join(scratch, `${name}-${process.pid}.mjs`);
  writeFileSync(file, code);
  t.after(() => rmSync(file, { force: true }));
  return file;
}

describe('ClusterPrimary.reload()', needs('wrk'), () => {
  for (const schedule of ['round-robin', 'least-loaded', 'reuseport'] as const) {
    for (const close of [false, true]) {
      const n = 5;
      test(
        `${schedule}, ${close ? 'Connection: close' : 'keep-alive'}: ${n} rolling reloads under wrk, 0 failed requests`,
        { timeout: 240_000 },
        async () => {
          await noLeak(async () => {
            const { primary, port, started } = await startPrimary(schedule);
            try {
              const wrk = startWrk(port, { close });
              await get(port);
              let pids = primary.workers.map((w) => w.pid).sort();
              for (let i = 0; i < n; i++) {
                const before = new Set(pids);
                const replaced = await primary.reload();
                assert.equal(replaced.length, 2);
                assert.ok(
                  replaced.every((p) => !before.has(p)),
                  'new workers',
                );
                // Resolved once every old worker exited: only the new ones are left.
                for (const c of started) if (before.has(c.pid!)) assert.equal(alive(c), false, `old worker ${c.pid} exited`);
                pids = primary.workers.map((w) => w.pid).sort();
                assert.deepEqual(pids, [...replaced].sort());
                // Each new worker took its predecessor's socket of the group: no socket more.
                if (schedule === 'reuseport') assert.equal(listeningSockets(port), 2);
              }
              const last = (await get(port)).pid as number;
              const r = await wrk.stop();
              assert.ok(r.requests > 0, r.text);
              assert.equal(r.socketErrors, 0, `socket errors:\n${r.text}`);
              assert.equal(r.non2xx, 0, r.text);
              assert.ok(pids.includes(last), 'a new worker answers');
              // No respawn behind the reloads: 2 + 2 per reload started, 2 alive.
              assert.equal(started.length, 2 + 2 * n);
              assert.equal(started.filter(alive).length, 2);
              console.log(`# ${schedule}, ${close ? 'Connection: close' : 'keep-alive'}: ${n} reloads, ${r.requests} requests, 0 failed`);
            } finally {
              await stop(primary, started);
            }
          });
        },
      );
    }
  }

  test(
    'a replacement that crashes, then one that never serves: ERR_FDPASS_RELOAD_FAILED, the old workers serve on, 0 failed, nothing leaked',
    { timeout: 240_000 },
    async () => {
      await noLeak(async () => {
        const mode = { args: ['http'] };
        const { primary, port, started } = await startPrimary('reuseport', mode);
        try {
          const wrk = startWrk(port);
          await get(port);
          const pids = primary.workers.map((w) => w.pid).sort();
          mode.args = ['crash'];
          await assert.rejects(primary.reload(), (err: Error & { code?: string }) => {
            assert.equal(err.code, 'ERR_FDPASS_RELOAD_FAILED');
            assert.match(err.message, /exited before it served; pid \d+ still serves/);
            return true;
          });
          assert.deepEqual(primary.workers.map((w) => w.pid).sort(), pids);
          mode.args = ['silent'];
          await assert.rejects(primary.reload({ readyTimeout: 500 }), (err: Error & { code?: string }) => {
            assert.equal(err.code, 'ERR_FDPASS_RELOAD_FAILED');
            assert.match(err.message, /did not serve default within 500 ms; pid \d+ still serves/);
            return true;
          });
          // The failed replacements are gone (the silent one stopped), not respawned.
          assert.equal(started.length, 4);
          assert.equal(started.filter(alive).length, 2);
          assert.deepEqual(primary.workers.map((w) => w.pid).sort(), pids);
          assert.ok(pids.includes((await get(port)).pid as number));
          const r = await wrk.stop();
          assert.ok(r.requests > 0, r.text);
          assert.equal(r.socketErrors + r.non2xx, 0, r.text);
          // Bad options reject before anything starts.
          await assert.rejects(primary.reload({ concurrency: 0 }), { code: 'ERR_OUT_OF_RANGE' });
          await assert.rejects(primary.reload({ readyTimeout: '1' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
          assert.equal(started.length, 4);
          // And a good reload after all that.
          mode.args = ['http'];
          const replaced = await primary.reload({ concurrency: 2 });
          assert.deepEqual(primary.workers.map((w) => w.pid).sort(), [...replaced].sort());
        } finally {
          await stop(primary, started);
        }
      });
    },
  );

  test("reuseport: a replacement that took its predecessor's socket and then fails gives it back", { timeout: 240_000 }, async () => {
    await noLeak(async () => {
      const mode = { args: ['http', 'a', 'b'] };
      const { primary, port, started } = await startPrimary('reuseport', mode, ['a', 'b']);
      try {
        const pids = primary.workers.map((w) => w.pid).sort();
        // It serves 'a' (on the old worker's socket of a's group), never 'b':
        // it dies once it has taken 'a'. (A time bound for 'b' was too short
        // for a worker's start under ASan; the timeout has its own test above.)
        mode.args = ['http', 'a'];
        let onA: (w: { pid: number }, name: string) => void = () => undefined;
        const tookA = new Promise<number>((resolve) => {
          onA = (w, name) => {
            if (name !== 'a' || pids.includes(w.pid)) return;
            primary.off('listening', onA);
            process.kill(w.pid, 'SIGKILL');
            resolve(w.pid);
          };
          primary.on('listening', onA);
        });
        await assert.rejects(primary.reload(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_FDPASS_RELOAD_FAILED');
          assert.match(err.message, /exited before it served; pid \d+ still serves/);
          return true;
        });
        assert.ok(!pids.includes(await tookA));
        assert.equal(started.filter(alive).length, 2);
        assert.deepEqual(primary.workers.map((w) => w.pid).sort(), pids);
        // The socket is the old worker's again: it accepts from it by itself,
        // none of these goes through the primary, and the group has no socket more.
        const answered = await Promise.all(Array.from({ length: 20 }, () => get(port)));
        assert.ok(answered.every((r) => pids.includes(r.pid as number)));
        assert.equal(
          primary.workers.reduce((n, w) => n + w.connections, 0),
          0,
          'no connection handed out by the primary',
        );
        assert.equal(listeningSockets(port), 2);
        mode.args = ['http', 'a', 'b'];
        const replaced = await primary.reload();
        assert.deepEqual(primary.workers.map((w) => w.pid).sort(), [...replaced].sort());
        assert.equal(listeningSockets(port), 2);
      } finally {
        await stop(primary, started);
      }
    });
  });

  test(
    'concurrent calls: a call during a reload waits for it, then reloads again; calls meanwhile share that one',
    { timeout: 240_000 },
    async () => {
      await noLeak(async () => {
        const { primary, started } = await startPrimary('round-robin');
        try {
          const first = primary.reload();
          const second = primary.reload();
          const third = primary.reload();
          assert.equal(third, second, 'the calls made during a reload share the next one');
          let firstDone = false;
          const a = await first.finally(() => (firstDone = true));
          const b = await second;
          assert.ok(firstDone);
          const at = (pid: number): number => started.findIndex((c) => c.pid === pid);
          assert.deepEqual(a.map(at).sort(), [2, 3], 'the first reload forked the 3rd and 4th workers');
          assert.deepEqual(b.map(at).sort(), [4, 5], 'the second one the 5th and 6th, after the first one ended');
          assert.deepEqual(primary.workers.map((w) => w.pid).sort(), [...b].sort());
          assert.equal(started.filter(alive).length, 2);
        } finally {
          await stop(primary, started);
        }
      });
    },
  );

  // The whole clustered app, as README's block: `fdpass run` (the
  // Supervisor) holds the listener and starts a new primary beside the old
  // one; the new one forks its workers and says READY=1 once they serve;
  // then the old one gets SIGTERM, and drain() drains its workers and exits.
  for (const close of [false, true]) {
    test(
      `the primary itself, under fdpass run, ${close ? 'Connection: close' : 'keep-alive'}: 5 reloads under wrk, 0 failed requests`,
      { timeout: 240_000 },
      async (t) => {
        const file = blockFile(
          t,
          docBlock('docs/cluster.md', '## The whole app, primary included: under `fdpass run`'),
          `cluster-app-${close ? 'close' : 'keepalive'}`,
        );
        await noLeak(async () => {
          const { sup, port } = await started(options({ command: process.execPath, args: [file] }));
          try {
            const hello = async (): Promise<number> => Number(/^hello from pid (\d+)\n$/.exec(await getText(port))?.[1]);
            const first = await hello();
            const wrk = startWrk(port, { close });
            await getText(port);
            const primaries = new Set<number>([sup.pid!]);
            let oldExited: Promise<unknown> = Promise.resolve();
            for (let i = 0; i < 5; i++) {
              const old = sup.pid;
              oldExited = next<[{ pid: number }]>(sup, 'exit', (e) => e.pid === old);
              primaries.add(await sup.reload());
            }
            await oldExited;
            const last = await hello();
            const r = await wrk.stop();
            assert.ok(r.requests > 0, r.text);
            assert.equal(r.socketErrors, 0, `socket errors:\n${r.text}\n${lines.join('\n')}`);
            assert.equal(r.non2xx, 0, r.text);
            assert.equal(primaries.size, 6);
            assert.notEqual(last, first, 'a worker of the last primary answers');
            console.log(
              `# the whole app under fdpass run, ${close ? 'Connection: close' : 'keep-alive'}: 5 reloads, ${r.requests} requests, 0 failed`,
            );
          } finally {
            await sup.stop();
          }
        });
      },
    );
  }

  // The whole clustered app without a supervisor, as docs/cluster.md's block:
  // each new version is started beside the running one, takes the listener
  // through fdpass/handoff, forks its workers and says ready once they serve;
  // the old primary drains its workers and exits.
  for (const close of [false, true]) {
    test(
      `the primary itself, through fdpass/handoff, ${close ? 'Connection: close' : 'keep-alive'}: 3 upgrades under wrk, 0 failed requests`,
      { timeout: 240_000 },
      async (t) => {
        const file = blockFile(
          t,
          docBlock('docs/cluster.md', '## The whole app, primary included: through `fdpass/handoff`'),
          `cluster-handoff-${close ? 'close' : 'keepalive'}`,
        );
        const dir = testDir(t);
        const port = await freePort();
        const env = { ...process.env, PORT: String(port), RUNTIME_DIRECTORY: dir.dir };
        await noLeak(async () => {
          const generations: ChildProcess[] = [];
          const start = (): ChildProcess => {
            const child = killAtEnd(t, spawn(process.execPath, [file], { env, stdio: ['ignore', 'inherit', 'inherit'] }));
            generations.push(child);
            return child;
          };
          const exitOf = (c: ChildProcess): Promise<number | string | null> =>
            c.exitCode !== null || c.signalCode !== null
              ? Promise.resolve(c.exitCode ?? c.signalCode)
              : new Promise((resolve) => c.once('exit', (code, signal) => resolve(code ?? signal)));
          try {
            const hello = async (): Promise<number> => Number(/^hello from pid (\d+)\n$/.exec(await getText(port))?.[1]);
            start();
            // Its control socket appears once its workers serve (ready()).
            await until(() => existsSync(dir.path('app.handoff')), 'the first generation serves and offers its listener');
            const first = await hello();
            const wrk = startWrk(port, { close });
            await getText(port);
            for (let i = 0; i < 3; i++) {
              const old = generations.at(-1)!;
              start();
              assert.equal(await exitOf(old), 0, 'the old primary drained and exited 0');
            }
            const last = await hello();
            const r = await wrk.stop();
            assert.ok(r.requests > 0, r.text);
            assert.equal(r.socketErrors, 0, `socket errors:\n${r.text}`);
            assert.equal(r.non2xx, 0, r.text);
            assert.notEqual(last, first, 'a worker of the last primary answers');
            const current = generations.at(-1)!;
            current.kill('SIGTERM');
            assert.equal(await exitOf(current), 0, 'SIGTERM drains the last one');
            console.log(
              `# the whole app through fdpass/handoff, ${close ? 'Connection: close' : 'keep-alive'}: 3 upgrades, ${r.requests} requests, 0 failed`,
            );
          } finally {
            for (const c of generations) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
            await Promise.all(generations.map(exitOf));
          }
        });
      },
    );
  }

  test('without fork, and after close(): ERR_FDPASS_RELOAD_FAILED', async () => {
    const primary = await ClusterPrimary.start({ listen: { port: 0, host: '127.0.0.1' }, setEnv: false });
    await assert.rejects(primary.reload(), { code: 'ERR_FDPASS_RELOAD_FAILED', message: /no fork option/ });
    await primary.close();
    const { primary: p2, started } = await startPrimary('round-robin');
    await stop(p2, started);
    await assert.rejects(p2.reload(), { code: 'ERR_FDPASS_RELOAD_FAILED', message: /closed/ });
  });
});
