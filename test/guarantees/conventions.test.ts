// Node conventions across the modules: `await using` (Symbol.asyncDispose) on
// listeners and the handoff, AbortSignal on the listeners' waits; and the test
// suite's own conventions (below).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listenConsoleSocket, sendConsole } from 'fdpass/runc';
import { Handoff } from 'fdpass/handoff';
import { noLeak, repoRoot, tempDir } from '../helpers.js';

describe('conventions', () => {
  it('RuncListener.next({ signal }): abort rejects with AbortError, the value goes to the next caller', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        await using listener = await listenConsoleSocket(t.path('console.sock'));
        const controller = new AbortController();
        const waiting = listener.next({ signal: controller.signal });
        controller.abort();
        await assert.rejects(waiting, { name: 'AbortError', code: 'ABORT_ERR' });
        await assert.rejects(listener.next({ signal: AbortSignal.abort() }), { name: 'AbortError' });
        await assert.rejects(listener.next({ signal: 'no' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });

        const fd = openSync('/dev/null', 'r');
        const sent = sendConsole(listener.path, '/dev/ptmx', fd);
        const got = await listener.next({ signal: AbortSignal.timeout(30_000) });
        await sent;
        closeSync(fd);
        assert.equal(got?.name, '/dev/ptmx');
        closeSync(got!.fd);
      });
      assert.ok(!existsSync(t.path('console.sock')), 'await using closed the listener and unlinked its file');
    } finally {
      t.cleanup();
    }
  });

  it('await using closes a Handoff: its control socket is gone at the end of the scope', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        {
          await using handoff = await Handoff.start({ path: t.path('control.sock'), exit: false });
          await handoff.ready();
          assert.ok(existsSync(t.path('control.sock')));
        }
        assert.ok(!existsSync(t.path('control.sock')));
      });
    } finally {
      t.cleanup();
    }
  });
});

// The suite's own rules, kept by a check rather than by review: every test
// file asserts through node:assert/strict and imports test/helpers.ts (which
// fails a test whose body ran no assertion); "this is CI" is read one way
// everywhere; no test waits a fixed time where an event could tell it, and
// each wait that remains is listed here with its reason.
describe('the test suite keeps itself honest', () => {
  const files = (dir: string, ends: string[]): string[] =>
    readdirSync(join(repoRoot, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name), ends) : ends.some((x) => e.name.endsWith(x)) ? [join(dir, e.name)] : [],
    );
  const read = (file: string): string => readFileSync(join(repoRoot, file), 'utf8');

  it('every test file imports node:assert/strict and test/helpers.ts, so that a test that asserts nothing fails', () => {
    const tests = files('test', ['.test.ts']);
    assert.ok(tests.length > 40, `found ${tests.length} test files`);
    for (const file of tests) {
      const text = read(file);
      assert.match(text, /^import assert from 'node:assert\/strict';$/m, `${file} asserts with node:assert/strict`);
      assert.match(text, /^import [^;]* from '(\.\.\/)*(\.\/)?helpers\.js';$/m, `${file} imports test/helpers.ts`);
    }
  });

  it('"this is CI" is CI=true or CI=1 in every runner, and .ci/run sets it', () => {
    const rule = "process.env.CI === 'true' || process.env.CI === '1'";
    const sources = [...files('test', ['.ts', '.mjs']), ...files('scripts', ['.mjs'])];
    let reads = 0;
    for (const file of sources) {
      for (const [i, line] of read(file).split('\n').entries()) {
        // Where it is read (compared or tested), not where a message prints it.
        if (!/process\.env\.CI\b/.test(line.replaceAll('${process.env.CI}', ''))) continue;
        reads++;
        assert.ok(line.includes(rule), `${file}:${i + 1} reads CI another way: ${line.trim()}`);
      }
    }
    assert.ok(reads >= 4, `the rule is read in test/tools.ts, the conformance harness and scripts (${reads} reads)`);
    assert.match(read('.ci/run'), /^case "\$\{CI:-\}" in true \| 1\) ;; \*\) export CI=true ;; esac$/m);
  });

  // Each remaining timer or sleep in test code, by file and a piece of its
  // line, with why it is not a wait for something an event could say. A
  // bound (a timer that fails, kills or gives up: the test's outcome comes
  // by an event before it) is recognised by its shape and needs no entry.
  const allowed: [file: string, piece: string, why: string][] = [
    ['test/helpers.ts', 'export function delay(', 'the one delay helper'],
    ['test/helpers.ts', 'return new Promise((res) => setTimeout(res, ms))', 'the one delay helper'],
    ['test/helpers.ts', 'await delay(10);', 'until(): a bounded poll (60 s, named) for what nothing signals'],
    ['test/guarantees/fuzz.test.ts', 'await delay(5);', "a sender's pause while the hostile manager restarts; no outcome rides on it"],
    [
      'test/protocols/systemd/real.test.ts',
      'setTimeout(r, 100)',
      "until(): a bounded poll (60 s, named) of systemd's state inside the container",
    ],
    [
      'test/protocols/systemd/real.test.ts',
      'setTimeout(r, 1000)',
      'next(): a message wakes it; the timer only re-checks that the load generator lives',
    ],
    [
      'test/protocols/systemd/receiver.ts',
      'time.sleep(0.005)',
      'looks at SIOCOUTQ until the other end read the junk: nothing signals it; bounded (60 s)',
    ],
    ['test/protocols/systemd/container.ts', 'const delay = (ms: number)', "the container's bounded boot polls (120 s, named)"],
    [
      'test/protocols/systemd/container.ts',
      'if (this.pid === 0) await delay(50);',
      "finding the container's systemd in /proc: nothing signals it; bounded (120 s)",
    ],
    ['test/protocols/systemd/container.ts', 'await delay(100);', 'is-system-running --wait says starting: ask again; bounded (120 s)'],
    ['test/protocols/systemd/fixtures/restartable.ts', 'setTimeout(() => process.exit(0), 5000).unref()', "the service's drain deadline"],
    ['test/protocols/systemd/fixtures/restartable.ts', 'setTimeout(', 'GET /?ms=N: a slow request of the load, its length the point'],
    [
      'test/guarantees/worker-threads.test.ts',
      'setInterval(() => {}, 1000); // stays until terminated',
      'keeps a worker alive until the test terminates it',
    ],
    [
      'test/guarantees/worker-threads.test.ts',
      'setInterval(() => {}, 1000); // serves until terminated',
      'keeps a worker alive until the test terminates it',
    ],
    ['test/peers/fuzz_peer.py', 'time.sleep(0.005)', 'the hostile manager restarting (its behaviour)'],
    ['test/peers/fuzz_peer.py', 'time.sleep(0.02)', 'the hostile manager being slow (its behaviour)'],
    [
      'test/peers/fuzz_peer.py',
      'time.sleep(max(0.0, held[0][0] + 1.2',
      "held connections outlive the listener's timeout; no outcome is asserted on them",
    ],
    ['test/peers/dying_peer.py', 'time.sleep(60)', 'the peer waits to be killed at its step'],
    [
      'test/protocols/handoff/fixtures/generation.ts',
      "setTimeout(answer, Number(query.get('ms') ?? 0))",
      'GET /?ms=N: a slow request of the load, its length the point',
    ],
    [
      'test/cli/recvtty.test.ts',
      "if (status !== 'stopped') await delay(50);",
      'runc says nothing when a detached container ends: a bounded poll (60 s) of runc state',
    ],
    ['test/docs/code-blocks.test.ts', 'await delay(10);', "a README server's listening port, from /proc: nothing signals it; bounded"],
    ['test/protocols/cluster/pm2.test.ts', 'setTimeout(r, 25)', "until(): PM2's state, polled; bounded and named"],
    ['test/protocols/cluster/cluster.test.ts', 'await delay(10)) {', "workers' fd counts, asked until back to before; bounded (60 s)"],
    [
      'test/conformance/harness.mjs',
      'setTimeout(r, 10)',
      "settleRuntime()/noLeak(): a runtime's own fds, which nothing signals; bounded (10 s), see there",
    ],
    [
      'test/conformance/shm.conf.mjs',
      'setInterval(() => {}, 1000); // alive until terminated',
      'keeps a worker alive until the test terminates it',
    ],
    [
      'test/conformance/shm.conf.mjs',
      "mappings('conf-deno-worker') > 0; i++) await new Promise((r) => setTimeout(r, 10));",
      "a terminated Deno worker's mappings, released by its cleanup hook: nothing signals it; bounded (1,000 turns)",
    ],
    [
      'test/protocols/shm/shm.test.ts',
      'if (!workerData.close) setInterval(() => {}, 1000);',
      'keeps a worker alive until the test terminates it',
    ],
    ['test/protocols/supervisor/supervisor.test.ts', 'setInterval(() => {}, 1000);', 'keeps a supervised child alive until it is stopped'],
    ['test/protocols/systemd/fixtures/watchdog.ts', 'setInterval(() => undefined, 1 << 30);', 'keeps the service alive; systemd stops it'],
    [
      'test/protocols/supervisor/fixtures/node-server.ts',
      'const t = setInterval(() => {',
      'the watchdog mode pings three times and then stops: the pause between pings is the behaviour under test',
    ],
    [
      'test/protocols/systemd/watchdog-real.test.ts',
      'await delay(100);',
      "until(): a bounded poll (60 s, named) of systemd's state inside the container",
    ],
    // Multi-line bounds (the callback on the next line fails or kills).
    ['test/lines.ts', 'const timer = setTimeout(() => {', 'a bound: rejects naming the line that did not come'],
    ['test/protocols/usocket/bus.ts', 'const timer = setTimeout(() => {', 'a bound: kills dbus-daemon that did not start'],
    ['test/transport/stream/util.ts', 'const timer = setTimeout(() => {', 'a bound: fails the wait for a peer'],
    ['test/conformance/harness.mjs', 'const timer = setTimeout(() => {', 'a bound: kills a child that did not end'],
    ['test/protocols/handoff/handoff.test.ts', 'const timer = setTimeout(', 'a bound: rejects naming the message that did not come'],
  ];
  const bound =
    /req\.setTimeout\(|setTimeout\(\s*\(\)\s*=>\s*(reject\(|[\w.!]*kill\(|req\.destroy|res\(null\)|r\('timeout'\)|res\('running'\))|setTimeout\(\(\) => res\(null\), WAKE_BOUND\)/;

  it('no fixed waits in tests: each timer or sleep is a bound, or listed with its reason', () => {
    const waits = /setTimeout\(|setInterval\(|\bdelay\(|time\.sleep\(/;
    const used = new Set<string>();
    const unexplained: string[] = [];
    for (const file of files('test', ['.ts', '.mjs', '.py'])) {
      for (const [i, line] of read(file).split('\n').entries()) {
        const code = line.trim();
        if (!waits.test(code) || /^(\/\/|\*|#|\/\*)/.test(code) || file === 'test/guarantees/conventions.test.ts') continue;
        if (bound.test(code)) continue;
        const entry = allowed.find(([f, piece]) => f === file && code.includes(piece));
        if (entry) used.add(`${entry[0]}:${entry[1]}`);
        else unexplained.push(`${file}:${i + 1}: ${code}`);
      }
    }
    assert.deepEqual(unexplained, [], 'a fixed wait: wait for an event instead, or bound it and list it here with why');
    const stale = allowed.filter(([f, piece]) => !used.has(`${f}:${piece}`)).map(([f, piece]) => `${f}: ${piece}`);
    assert.deepEqual(stale, [], 'allow-list entries that match nothing any more: remove them');
    for (const [, , why] of allowed) assert.ok(why.length > 10, 'each entry says why');
  });
});
