// Shared by the supervisor tests: wrk under load, HTTP GETs, building the Go
// fixture, and waiting on the supervisor's events.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { Supervisor, type SupervisorOptions } from 'fdpass/supervisor';
import { repoRoot } from '../../helpers.js';

export const nodeFixture = join(repoRoot, 'build-test', 'test', 'protocols', 'supervisor', 'fixtures', 'node-server.js');
export const fixtures = join(repoRoot, 'test', 'protocols', 'supervisor', 'fixtures');
/** Debian's python3 (python3-systemd is built for it, not for another python3 on PATH). */
export const debianPython = '/usr/bin/python3';

export async function get(port: number): Promise<Record<string, unknown>> {
  const { status, body } = await fetchRoot(port);
  if (status !== 200) throw new Error(`HTTP ${status}: ${body}`);
  return JSON.parse(body) as Record<string, unknown>;
}

/** GET / on 127.0.0.1:port as text, whatever its status (the README's apps answer text). */
export async function getText(port: number): Promise<string> {
  return (await fetchRoot(port)).body;
}

function fetchRoot(port: number): Promise<{ status: number | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
}

export interface WrkResult {
  requests: number;
  socketErrors: number;
  /** Of socketErrors, connections reset before any answer (the Node client counts them; wrk: 0). */
  resets: number;
  non2xx: number;
  text: string;
}

/** wrk against 127.0.0.1:port until stop() (SIGINT, after which wrk prints its totals). */
export function startWrk(port: number, options: { close?: boolean; connections?: number } = {}): { stop: () => Promise<WrkResult> } {
  const args = ['-t1', `-c${options.connections ?? 8}`, '-d120s'];
  if (options.close) args.push('-H', 'Connection: close');
  const child = spawn('wrk', [...args, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  const done = once(child, 'exit');
  return {
    stop: async () => {
      child.kill('SIGINT');
      await done;
      const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
      const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
      const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
      return { requests, socketErrors, resets: 0, non2xx, text };
    },
  };
}

/** wrk has answered at least once: the load is on. */
export async function loadOn(port: number): Promise<void> {
  await get(port);
}

/** Resolve on the next `event` of `sup` for which `match` holds. */
export function next<A extends unknown[]>(sup: Supervisor, event: string, match: (...args: A) => boolean = () => true): Promise<A> {
  return new Promise((resolve) => {
    const on = (...args: unknown[]): void => {
      if (!match(...(args as A))) return;
      (sup as unknown as NodeJS.EventEmitter).off(event, on);
      resolve(args as A);
    };
    (sup as unknown as NodeJS.EventEmitter).on(event, on);
  });
}

let goBinary: string | null = null;

/**
 * The Go fixture (GOPATH mode on Debian's go-systemd), built into
 * build-test/go-server with its build cache beside it: kept between runs
 * like the compiled tests, rebuilt when main.go is newer, and nothing left
 * in a test's TMPDIR.
 */
export function buildGoServer(): string {
  if (goBinary) return goBinary;
  const dir = join(repoRoot, 'build-test', 'go-server');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'go-server');
  const source = join(fixtures, 'go-server', 'main.go');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(source).mtimeMs) {
    const r = spawnSync('go', ['build', '-o', out, source], {
      env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: join(dir, 'cache'), GOFLAGS: '' },
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`go build failed: ${r.stderr}`);
  }
  goBinary = out;
  return out;
}

/**
 * A load of our own, for servers whose responses wrk miscounts (uwsgi's HTTP
 * closes each connection without saying so: wrk calls every response a read
 * error, with no reload at all): `connections` loops of one GET per
 * connection, each failure (an error, a non-2xx status) counted.
 */
export function startGetLoad(port: number, connections = 8): { stop: () => Promise<WrkResult> } {
  let running = true;
  let requests = 0;
  let socketErrors = 0;
  let resets = 0;
  let non2xx = 0;
  const errors: string[] = [];
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode! >= 200 && res.statusCode! < 300) requests++;
          else non2xx++;
          resolve();
        });
        res.on('error', (err) => {
          socketErrors++;
          errors.push(err.message);
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        socketErrors++;
        if (err.code === 'ECONNRESET') resets++;
        errors.push(err.message);
        resolve();
      });
    });
  const loops = Array.from({ length: connections }, async () => {
    while (running) await one();
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return {
        requests,
        socketErrors,
        resets,
        non2xx,
        text: `${requests} requests, ${socketErrors} errors (${errors.slice(0, 5).join('; ')}), ${non2xx} non-2xx`,
      };
    },
  };
}

export const lines: string[] = [];
export function options(extra: Partial<SupervisorOptions> & Pick<SupervisorOptions, 'command'>): SupervisorOptions {
  return { listeners: [{ host: '127.0.0.1', port: 0, name: 'http' }], stdio: 'ignore', log: (l) => lines.push(l), ...extra };
}

export async function started(o: SupervisorOptions): Promise<{ sup: Supervisor; port: number }> {
  const sup = await Supervisor.start(o);
  // One 'exit' listener, removed once the race is decided: a test that adds
  // its own per reload stays under EventEmitter's 10.
  let onExit: () => void = () => undefined;
  const failed = new Promise<null>((resolve) => {
    onExit = () => resolve(null);
    sup.once('exit', onExit);
  });
  const first = await Promise.race([next(sup, 'ready'), failed]);
  sup.off('exit', onExit);
  if (first === null) {
    await sup.stop();
    throw new Error(`the first process exited before it was ready:\n${lines.join('\n')}`);
  }
  return { sup, port: sup.sockets[0]!.port! };
}

/** Reload `n` times under wrk; every reload must succeed, every request must be answered 2xx. Gives the number answered. */
/**
 * n reloads of o's program under load; every request must succeed. `resets`
 * bounds the connections a program itself may reset before answering (uwsgi,
 * see uwsgi.test.ts); any other failure, or more resets, fails the test.
 */
export async function reloadsUnderLoad(
  o: SupervisorOptions,
  n: number,
  close: boolean | 'node-client',
  forks = false,
  resets = 0,
): Promise<number> {
  const { sup, port } = await started(o);
  try {
    const first = (await get(port)).pid;
    const wrk = close === 'node-client' ? startGetLoad(port) : startWrk(port, { close });
    await get(port);
    const pids = new Set<unknown>([first]);
    // One 'exit' listener for every reload (old processes may still drain
    // while the next reloads: a listener each would pile up past 10).
    const gone = new Set<number>();
    let waitFor: { pid: number | null; resolve: () => void } | null = null;
    const onExit = (s: { pid: number }): void => {
      gone.add(s.pid);
      if (waitFor?.pid === s.pid) waitFor.resolve();
    };
    sup.on('exit', onExit);
    let lastOld: number | null = null;
    try {
      for (let i = 0; i < n; i++) {
        lastOld = sup.pid;
        pids.add(await sup.reload());
      }
      // Once the last old process is gone, requests reach the new one only.
      const old = lastOld;
      if (old !== null && !gone.has(old)) await new Promise<void>((resolve) => (waitFor = { pid: old, resolve }));
    } finally {
      sup.off('exit', onExit);
    }
    const last = (await get(port)).pid;
    const r = await wrk.stop();
    assert.ok(r.requests > 0, r.text);
    assert.equal(r.socketErrors - Math.min(r.resets, resets), 0, `socket errors:\n${r.text}\n${lines.join('\n')}`);
    assert.equal(r.non2xx, 0, r.text);
    assert.equal(pids.size, n + 1);
    // A program that forks workers (gunicorn) answers from their pids.
    if (!forks) assert.equal(last, sup.pid);
    console.log(
      `# ${o.command} ${o.args?.join(' ') ?? ''}: ${n} reloads, ${close === 'node-client' ? 'a Node client, one request per connection' : close ? 'Connection: close' : 'keep-alive'}: ${r.requests} requests, ${r.socketErrors === 0 ? '0 failed' : `${r.socketErrors} reset by the program before it answered`}`,
    );
    return r.requests;
  } finally {
    await sup.stop();
  }
}
