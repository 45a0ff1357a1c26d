// `fdpass demo`: an HTTP server restarted several times under load, with
// zero failed requests, by handing its listening socket to each new process
// (fdpass/handoff). Three kinds of processes, all this same module:
//   the supervisor (what the user runs): starts everything, prints progress
//     and, last, one JSON summary line;
//   generations of the server (--role=server), each a new process;
//   the load generator (--role=load), a separate process.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Handoff } from '../protocols/handoff/index.js';
import type { Command } from './command.js';

const help = `Usage: fdpass demo [options]

Runs an HTTP server, drives load at it from a separate process, and replaces
the server with a new process several times while the load runs, handing the
listening socket over (fdpass/handoff). Prints progress, then one JSON line:
{"requests":N,"failed":0,"restarts":K,...}.

Options:
  --duration <seconds>     how long the load runs (default 15)
  --restarts <n>           how many times the server is replaced (default 4)
  --concurrency <n>        concurrent requests (default 16; a quarter on new connections)
  --port <n>               port on 127.0.0.1 (default 0: any free port)
  -h, --help               show this help`;

const main = fileURLToPath(new URL('./main.js', import.meta.url));

interface GenerationMessage {
  event: string;
  gen: number;
  pid: number;
  [key: string]: unknown;
}

interface LoadSummary {
  requests: number;
  failed: number;
  errors: string[];
  byGeneration: Record<string, number>;
  keepAliveReused: number;
  newConnections: number;
  longestPauseMs: number;
  maxLatencyMs: number;
}

function positiveInt(value: string | undefined, name: string, def: number, min = 1): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new RangeError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

// ---- server generation -------------------------------------------------------

async function runServer(control: string, gen: number): Promise<number> {
  const send = (m: Record<string, unknown>): void => {
    if (process.connected) process.send!({ gen, pid: process.pid, ...m });
  };
  const handoff = await Handoff.start({ path: control, drainTimeout: 10_000 });
  const server = http.createServer((req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://demo').searchParams.get('ms') ?? 0);
    setTimeout(
      () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ gen, pid: process.pid }));
      },
      Math.min(ms, 5000),
    );
  });
  const port = Number(process.env.FDPASS_DEMO_PORT ?? 0);
  const inherited = await handoff.listen(server, 'http', { port, host: '127.0.0.1' });
  handoff.on('takeover', (peer) => send({ event: 'takeover', by: peer.pid }));
  handoff.on('aborted', (peer, reason) => send({ event: 'aborted', by: peer.pid, reason }));
  handoff.on('draining', (s) => send({ event: 'draining', ...s }));
  handoff.on('drained', (r) => send({ event: 'drained', ...r }));
  await handoff.ready();
  const address = server.address();
  send({
    event: 'ready',
    inherited,
    predecessor: handoff.predecessor?.pid ?? null,
    port: typeof address === 'object' && address ? address.port : 0,
  });
  const stop = (): void => {
    void handoff.drain();
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
  return new Promise<number>(() => undefined); // handoff exits the process once drained
}

// ---- load generator ----------------------------------------------------------

async function runLoad(port: number, concurrency: number): Promise<number> {
  const summary: LoadSummary = {
    requests: 0,
    failed: 0,
    errors: [],
    byGeneration: {},
    keepAliveReused: 0,
    newConnections: 0,
    longestPauseMs: 0,
    maxLatencyMs: 0,
  };
  const fresh = Math.max(concurrency >= 2 ? 1 : 0, Math.floor(concurrency / 4));
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency - fresh });
  let running = true;
  let lastDone = 0;
  let n = 0;
  const fail = (err: string): void => {
    summary.failed++;
    if (summary.errors.length < 20) summary.errors.push(err);
  };
  const one = (keepAlive: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const ms = n++ % 10 === 0 ? 100 : 0; // some slow requests: in flight during handoffs
      const t0 = performance.now();
      const req = http.get({ host: '127.0.0.1', port, path: `/?ms=${ms}`, agent: keepAlive ? agent : false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
            const { gen } = JSON.parse(body) as { gen: number };
            const now = performance.now();
            summary.requests++;
            // The supervisor schedules its restarts from the first answer.
            if (summary.requests === 1 && process.connected) process.send!({ event: 'serving' });
            summary.byGeneration[gen] = (summary.byGeneration[gen] ?? 0) + 1;
            if (lastDone > 0) summary.longestPauseMs = Math.max(summary.longestPauseMs, now - lastDone);
            lastDone = now;
            summary.maxLatencyMs = Math.max(summary.maxLatencyMs, now - t0 - ms);
          } catch (err) {
            fail(String(err));
          }
          resolve();
        });
        res.on('error', (err) => {
          fail(String(err));
          resolve();
        });
      });
      req.on('socket', () => {
        if (req.reusedSocket) summary.keepAliveReused++;
        else if (!keepAlive) summary.newConnections++;
      });
      req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
      req.on('error', (err) => {
        fail(`${String(err)}${req.reusedSocket ? ' (reused keep-alive connection)' : ''}`);
        resolve();
      });
    });
  const worker = async (keepAlive: boolean): Promise<void> => {
    while (running) await one(keepAlive);
  };
  const workers = Array.from({ length: concurrency }, (_, i) => worker(i >= fresh));
  const progress = setInterval(() => {
    if (process.connected)
      process.send!({ event: 'progress', requests: summary.requests, failed: summary.failed, byGeneration: summary.byGeneration });
  }, 1000);
  await new Promise<void>((resolve) => {
    process.once('message', () => resolve());
    process.once('disconnect', () => resolve());
  });
  running = false;
  clearInterval(progress);
  await Promise.all(workers);
  agent.destroy();
  summary.longestPauseMs = Math.round(summary.longestPauseMs);
  summary.maxLatencyMs = Math.round(summary.maxLatencyMs);
  if (process.connected) process.send!({ event: 'summary', ...summary });
  process.disconnect?.();
  return 0;
}

// ---- supervisor --------------------------------------------------------------

class Child {
  readonly messages: GenerationMessage[] = [];
  #waiters: { event: string; resolve: (m: GenerationMessage) => void; reject: (e: Error) => void }[] = [];
  readonly exit: Promise<number | string>;
  constructor(readonly process: ChildProcess) {
    process.on('message', (m: GenerationMessage) => {
      this.messages.push(m);
      const i = this.#waiters.findIndex((w) => w.event === m.event);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
    });
    this.exit = new Promise((resolve) =>
      process.once('exit', (code, signal) => {
        resolve(code ?? signal ?? -1);
        setImmediate(() => {
          for (const w of this.#waiters.splice(0)) w.reject(new Error(`pid ${process.pid} exited (${code ?? signal}) before "${w.event}"`));
        });
      }),
    );
  }
  next(event: string): Promise<GenerationMessage> {
    const i = this.messages.findIndex((m) => m.event === event);
    if (i >= 0) return Promise.resolve(this.messages.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => this.#waiters.push({ event, resolve, reject }));
  }
}

async function supervise(durationS: number, restarts: number, concurrency: number, port: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'fdpass-demo-'));
  const control = join(dir, 'handoff.sock');
  const t0 = performance.now();
  const log = (text: string): void => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${text}`);
  const children: Child[] = [];
  const spawnServer = (gen: number): Child => {
    const c = new Child(
      fork(main, ['demo', '--role=server', `--control=${control}`, `--generation=${gen}`], {
        env: { ...process.env, FDPASS_DEMO_PORT: String(port) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    children.push(c);
    if (process.env.FDPASS_DEMO_DEBUG) c.process.on('message', (m) => log(`debug ${JSON.stringify(m)}`));
    return c;
  };
  try {
    let current = spawnServer(1);
    const first = await current.next('ready');
    const listenPort = first.port as number;
    log(`generation 1 (pid ${first.pid}) listening on http://127.0.0.1:${listenPort}/`);
    const load = new Child(
      fork(main, ['demo', '--role=load', `--port=${listenPort}`, `--concurrency=${concurrency}`], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    children.push(load);
    log(`load: ${concurrency} concurrent requests from pid ${load.process.pid} for ${durationS} s`);
    load.process.on('message', (m: GenerationMessage) => {
      if (m.event === 'progress') {
        log(`${m.requests} requests, ${m.failed} failed, by generation ${JSON.stringify(m.byGeneration)}`);
      }
    });
    const handoffs: {
      generation: number;
      pid: number;
      tookOverFrom: number;
      handoffMs: number;
      inFlight: number;
      connections: number;
      forced: number;
      exitCode: number | string;
    }[] = [];
    // Restarts are spread over the load's duration from its first answer, so
    // that every generation serves, however slowly the processes started.
    await Promise.race([load.next('serving'), new Promise((r) => setTimeout(r, 30_000).unref())]);
    const start = performance.now();
    const end = start + durationS * 1000;
    for (let i = 1; i <= restarts; i++) {
      const at = start + (durationS * 1000 * i) / (restarts + 1);
      await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
      const gen = i + 1;
      const started = performance.now();
      const old = current;
      const next = spawnServer(gen);
      const ready = await next.next('ready');
      const handoffMs = Math.round(performance.now() - started);
      const draining = await old.next('draining');
      log(
        `restart ${i}: generation ${gen} (pid ${ready.pid}) took over the listener from pid ${String(ready.predecessor)} ` +
          `(${handoffMs} ms from spawn to ready); generation ${gen - 1} drains ${String(draining.inFlight)} in-flight request(s)`,
      );
      current = next;
      const drained = await old.next('drained');
      const exitCode = await old.exit;
      log(`generation ${gen - 1} drained (${String(drained.forced)} forced) and exited (${exitCode})`);
      handoffs.push({
        generation: gen,
        pid: ready.pid,
        tookOverFrom: ready.predecessor as number,
        handoffMs,
        inFlight: draining.inFlight as number,
        connections: draining.connections as number,
        forced: drained.forced as number,
        exitCode,
      });
    }
    await new Promise((r) => setTimeout(r, Math.max(0, end - performance.now())));
    load.process.send('stop');
    const summary = (await load.next('summary')) as unknown as LoadSummary;
    await load.exit;
    current.process.kill('SIGTERM');
    const lastExit = await current.exit;
    log(`load stopped; generation ${restarts + 1} shut down (${lastExit})`);
    for (const e of summary.errors) log(`error: ${e}`);
    const result = {
      requests: summary.requests,
      failed: summary.failed,
      restarts: handoffs.length,
      requestsPerGeneration: summary.byGeneration,
      longestPauseMs: summary.longestPauseMs,
      maxLatencyMs: summary.maxLatencyMs,
      keepAliveReused: summary.keepAliveReused,
      newConnections: summary.newConnections,
      inFlightAtHandoff: handoffs.map((h) => h.inFlight),
      forcedAtDeadline: handoffs.reduce((a, h) => a + h.forced, 0),
      handoffMs: handoffs.map((h) => h.handoffMs),
      concurrency,
      durationMs: Math.round(performance.now() - t0),
    };
    console.log(JSON.stringify(result));
    return summary.failed === 0 && handoffs.length === restarts && result.forcedAtDeadline === 0 ? 0 : 1;
  } finally {
    for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

export const demo: Command = {
  name: 'demo',
  summary: 'restart an HTTP server several times under load, with zero failed requests',
  async run(args: string[]): Promise<number> {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        options: {
          duration: { type: 'string' },
          restarts: { type: 'string' },
          concurrency: { type: 'string' },
          port: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
          role: { type: 'string' },
          control: { type: 'string' },
          generation: { type: 'string' },
        },
        strict: true,
      }));
    } catch (err) {
      console.error(`fdpass demo: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    if (values.help) {
      console.log(help);
      return 0;
    }
    try {
      if (values.role === 'server') return await runServer(values.control!, positiveInt(values.generation, 'generation', 1));
      if (values.role === 'load')
        return await runLoad(positiveInt(values.port, 'port', 0), positiveInt(values.concurrency, 'concurrency', 16));
      const duration = positiveInt(values.duration, 'duration', 15);
      const restarts = positiveInt(values.restarts, 'restarts', 4, 0);
      const concurrency = positiveInt(values.concurrency, 'concurrency', 16);
      const port = positiveInt(values.port, 'port', 0, 0);
      return await supervise(duration, restarts, concurrency, port);
    } catch (err) {
      if (err instanceof RangeError) {
        console.error(`fdpass demo: ${err.message}\n\n${help}`);
        return 2;
      }
      throw err;
    }
  },
};
