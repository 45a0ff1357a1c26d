// The fdpass/cluster rows of `npm run bench`: an http server answering "ok"
// with 2 workers, under Debian's wrk, clustered by node:cluster (round
// robin, its default), node:cluster SCHED_NONE, fdpass/cluster's default
// (round robin through its primary) and fdpass/cluster with schedule
// 'reuseport'; the four loaded in turn within each round. The targets are
// judged on 'reuseport', the fastest; the default's ratios are printed too.
// Then a worker is SIGKILLed every second under load, and failed requests are
// set beside the connections the killed workers held. Nothing here asserts
// speed.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const MODES = [
  ['rr', 'node:cluster round robin (default)'],
  ['none', 'node:cluster SCHED_NONE'],
  ['fdpass', 'fdpass/cluster (round-robin, default)'],
  ['reuseport', "fdpass/cluster (schedule: 'reuseport')"],
];
const FDPASS_MODES = ['reuseport', 'fdpass'];

export function wrkProblem() {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (r.error) return 'wrk not installed (apt-get install wrk)';
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Start a clustered server; resolves with a handle once every worker listens. */
async function startServer(mode) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(here, 'peers', 'cluster-server.mjs'), mode, '2'], {
    cwd: join(here, '..'),
    env: { ...process.env, BENCH_PORT: String(port) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const waiters = [];
  const exits = [];
  const killed = [];
  lines.on('line', (line) => {
    if (line.startsWith('killed ')) {
      const [, pid, held] = line.split(' ').map(Number);
      killed.push({ pid, held });
      return;
    }
    if (line.startsWith('exit ')) {
      const [, pid, inFlight, redispatched] = line.split(' ').map(Number);
      exits.push({ pid, inFlight, redispatched });
      return;
    }
    const i = waiters.findIndex((w) => line.startsWith(w.prefix));
    if (i >= 0) {
      const [w] = waiters.splice(i, 1);
      w.resolve(line.slice(w.prefix.length));
    }
  });
  const expect = (prefix) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${mode}: no "${prefix}" in 30 s`)), 30_000);
      waiters.push({
        prefix,
        resolve: (rest) => {
          clearTimeout(timer);
          resolve(rest);
        },
      });
    });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const ready = expect('ready ');
  const got = await Promise.race([ready, exited.then((code) => Promise.reject(new Error(`${mode} server exited with ${code}`)))]);
  return {
    port: Number(got.trim() || port),
    exits,
    killed,
    async counts() {
      const p = expect('counts ');
      child.stdin.write('counts\n');
      return JSON.parse((await p).trim());
    },
    kill() {
      child.stdin.write('kill\n');
    },
    async stop() {
      child.stdin.write('quit\n');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

function toMs(text) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

/** Run wrk and parse what it prints. */
function wrk(port, seconds, close) {
  return new Promise((resolve) => {
    const args = ['-t1', '-c32', `-d${seconds}s`, '--latency', ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}/`];
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', () => {
      const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
      const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      resolve({
        rps: num(/Requests\/sec:\s+([\d.]+)/),
        requests: num(/(\d+) requests in/),
        p50: toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ''),
        p99: toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
        socketErrors: errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
        errorDetail: errors ? errors[0] : '',
        non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
        raw: out,
      });
    });
  });
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function runClusterBench({ quick, rounds, log }) {
  const problem = wrkProblem();
  if (problem) {
    // CI installs wrk: there a missing wrk is a failure, not a skip.
    if (process.env.CI === 'true') return { skipped: problem, errors: [`${problem}, under CI=true`] };
    log(`cluster: skipped: ${problem}`);
    return { skipped: problem, errors: [] };
  }
  // The three servers run side by side for the whole measure (an idle one
  // costs nothing) and are loaded in turn, so that a machine whose load
  // drifts weighs on each alike; figures are medians of per-round ratios.
  const seconds = quick ? 1 : 3;
  const killSeconds = quick ? 2 : 10;
  const n = quick ? 1 : Math.max(3, rounds);
  const samples = Object.fromEntries(MODES.map(([id]) => [id, { close: [], keepAlive: [], balance: [] }]));
  const ratios = Object.fromEntries(FDPASS_MODES.map((id) => [id, { closeVsRr: [], closeVsNone: [], keepAliveVsRr: [] }]));
  const errors = [];
  const servers = {};
  try {
    for (const [id] of MODES) servers[id] = await startServer(id);
    if (!quick) for (const [id] of MODES) await wrk(servers[id].port, 1, true); // warm-up
    for (let round = 0; round < n; round++) {
      // Alternate: each round starts with the next mode.
      const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]);
      const got = {};
      for (const [id] of order) {
        await servers[id].counts();
        const close = await wrk(servers[id].port, seconds, true);
        const counts = await servers[id].counts();
        samples[id].close.push(close);
        samples[id].balance.push(Math.max(...counts) / Math.max(1, Math.min(...counts)));
        got[id] = { close, counts };
      }
      for (const [id] of order) {
        const keepAlive = await wrk(servers[id].port, seconds, false);
        samples[id].keepAlive.push(keepAlive);
        got[id].keepAlive = keepAlive;
      }
      for (const id of FDPASS_MODES) {
        ratios[id].closeVsRr.push(got[id].close.rps / got.rr.close.rps);
        ratios[id].closeVsNone.push(got[id].close.rps / got.none.close.rps);
        ratios[id].keepAliveVsRr.push(got[id].keepAlive.rps / got.rr.keepAlive.rps);
      }
      for (const [id] of MODES) {
        const g = got[id];
        log(
          `  cluster round ${round + 1} ${id}: close ${Math.round(g.close.rps)} req/s (errors ${g.close.socketErrors + g.close.non2xx}), ` +
            `keep-alive ${Math.round(g.keepAlive.rps)} req/s, per worker ${JSON.stringify(g.counts)}`,
        );
      }
    }
  } catch (err) {
    errors.push(err.message);
    log(`  cluster: FAILED ${err.message}`);
  } finally {
    for (const s of Object.values(servers)) await s.stop();
  }
  const results = MODES.map(([id, label]) => {
    const s = samples[id];
    return {
      id,
      label,
      runs: s.close.length,
      closeRps: median(s.close.map((r) => r.rps)),
      closeP50: median(s.close.map((r) => r.p50)),
      closeP99: median(s.close.map((r) => r.p99)),
      closeErrors: s.close.reduce((a, r) => a + r.socketErrors + r.non2xx, 0),
      keepAliveRps: median(s.keepAlive.map((r) => r.rps)),
      keepAliveP50: median(s.keepAlive.map((r) => r.p50)),
      keepAliveP99: median(s.keepAlive.map((r) => r.p99)),
      balance: median(s.balance),
    };
  });
  const versus = Object.fromEntries(
    FDPASS_MODES.map((id) => [
      id,
      {
        label: MODES.find(([m]) => m === id)[1],
        closeVsRr: median(ratios[id].closeVsRr),
        closeVsNone: median(ratios[id].closeVsNone),
        keepAliveVsRr: median(ratios[id].keepAliveVsRr),
        perRound: ratios[id],
      },
    ]),
  );

  // Workers SIGKILLed under short-connection load, one per second; each is
  // replaced. A request fails only if the killed worker held its connection.
  const kills = {};
  for (const id of [...FDPASS_MODES, 'rr']) {
    let server;
    try {
      server = await startServer(id);
      const load = wrk(server.port, killSeconds + 1, true);
      for (let i = 0; i < killSeconds; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        server.kill();
      }
      const r = await load;
      kills[id] = {
        kills: killSeconds,
        requests: r.requests,
        failed: r.socketErrors + r.non2xx,
        detail: r.errorDetail,
        // Counted in /proc while each worker was stopped just before its SIGKILL.
        heldByKilled: server.killed.reduce((a, k) => a + k.held, 0),
        reportedByKilled: id !== 'rr' ? server.exits.reduce((a, e) => a + e.inFlight, 0) : null,
        redispatched: id !== 'rr' ? server.exits.reduce((a, e) => a + e.redispatched, 0) : null,
      };
      log(`  kill test ${id}: ${JSON.stringify(kills[id])}`);
    } catch (err) {
      errors.push(`kill ${id}: ${err.message}`);
      kills[id] = { error: err.message };
    } finally {
      await server?.stop();
    }
  }
  return { seconds, rounds: n, results, versus, kills, errors };
}

export function printCluster(c, log) {
  if (c.skipped) return log(`\nfdpass/cluster: skipped (${c.skipped})`);
  const f = (x, d = 0) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const big = (x) => (x === null ? '-' : Math.round(x).toLocaleString('en-US'));
  log(`\nhttp "ok", 2 workers, wrk -t1 -c32 -d${c.seconds}s, ${c.rounds} round(s) alternated (medians; ratios: medians of per-round ratios)`);
  log('| server | Connection: close req/s | p50 / p99 ms | busiest/quietest worker | keep-alive req/s | p50 / p99 ms |');
  log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of c.results) {
    log(
      `| ${r.label} | ${big(r.closeRps)} | ${f(r.closeP50, 2)} / ${f(r.closeP99, 2)} | ${f(r.balance, 2)} | ${big(r.keepAliveRps)} | ${f(r.keepAliveP50, 2)} / ${f(r.keepAliveP99, 2)} |`,
    );
  }
  const range = (xs) => (xs.length > 1 ? `, rounds ${f(Math.min(...xs), 2)}-${f(Math.max(...xs), 2)}x` : '');
  // The targets are the fastest mode's; the default's ratios are shown beside them, without a verdict.
  for (const [id, v] of Object.entries(c.versus)) {
    const target = id === 'reuseport';
    const met = (x, t, xs) =>
      x === null ? '-' : `${f(x, 2)}x (${target ? `target >= ${t}x, ${x >= t ? 'met' : 'MISSED'}` : 'no target'}${range(xs)})`;
    log(`${v.label} vs node:cluster round robin, short connections: ${met(v.closeVsRr, 1.6, v.perRound.closeVsRr)}`);
    log(`${v.label} vs SCHED_NONE, short connections: ${met(v.closeVsNone, 1.0, v.perRound.closeVsNone)}`);
    log(
      `${v.label} vs node:cluster, keep-alive: ${v.keepAliveVsRr === null ? '-' : `${f(v.keepAliveVsRr, 2)}x (${target ? 'target: no worse' : 'no target'}${range(v.perRound.keepAliveVsRr)})`}`,
    );
  }
  for (const [id, k] of Object.entries(c.kills)) {
    if (k.error) log(`kill test ${id}: FAILED ${k.error}`);
    else
      log(
        `a worker SIGKILLed every second for ${k.kills} s, ${id}: ${k.failed} failed of ${k.requests} requests; ` +
          `the killed workers held ${k.heldByKilled} connections (${k.failed <= k.heldByKilled ? 'none failed beyond them' : 'MORE FAILED THAN THEY HELD'})` +
          (k.redispatched !== null ? `; ${k.redispatched} they had not acknowledged went to other workers` : ''),
      );
  }
}
