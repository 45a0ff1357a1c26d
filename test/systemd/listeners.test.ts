// listenStored() outside systemd: it listens on the fallback, stores nothing,
// and drains like the handoff (in-flight requests finish with "Connection:
// close", the listener closes). Against a real systemd: real.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { listenStored } from 'fdpass/systemd';
import { delay, noLeak, repoRoot, tempDir } from '../helpers.js';
import { JsonLines, exited, type Json } from '../lines.js';
import { needs } from '../tools.js';

const claim = join(repoRoot, 'build-test', 'test', 'systemd', 'fixtures', 'claim.js');

function get(socketPath: string): Promise<Json> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/', agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(JSON.parse(body) as Json));
      })
      .on('error', reject);
  });
}

for (const [mode, extraOpen] of [
  ['own', false],
  ['passed', true],
] as const) {
  test(
    `with systemd-socket-activate: the listener by name; an fd nobody claims is ${extraOpen ? 'left to the caller who passed it' : 'closed'} (${mode})`,
    needs('systemd-socket-activate'),
    async () => {
      const t = tempDir();
      const http1 = t.path('http.sock');
      const extra = t.path('extra.sock');
      const child = spawn(
        '/usr/bin/systemd-socket-activate',
        ['-l', http1, '-l', extra, '--fdname=http:extra', process.execPath, claim, mode],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const lines = new JsonLines(child);
      try {
        const deadline = Date.now() + 20_000;
        while (!lines.stderr.includes(`Listening on ${extra}`)) {
          if (child.exitCode !== null || Date.now() > deadline) throw new Error(`systemd-socket-activate: ${lines.stderr}`);
          await delay(20);
        }
        const r = await get(http1);
        assert.deepEqual(r.inherited, ['http']);
        assert.equal(r.extraOpen, extraOpen);
      } finally {
        child.kill('SIGTERM');
        await exited(child);
        t.cleanup();
      }
    },
  );
}

test('outside systemd: listens on the fallback, stored is false, drain() finishes in-flight requests and stops accepting', () =>
  noLeak(async () => {
    const saved = { NOTIFY_SOCKET: process.env.NOTIFY_SOCKET, LISTEN_PID: process.env.LISTEN_PID };
    delete process.env.NOTIFY_SOCKET;
    delete process.env.LISTEN_PID;
    const t = tempDir();
    const path = t.path('http.sock');
    let release: () => void = () => undefined;
    let arrived: () => void = () => undefined;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const server = http.createServer((_req, res) => {
      release = () => res.end('done');
      arrived();
    });
    try {
      const service = await listenStored(server, 'http', path, { exit: false, handleSigterm: false });
      assert.deepEqual(service.inherited, []);
      assert.equal(service.stored, false);
      assert.equal(server.listening, true);
      // A request in flight when draining starts.
      const response = new Promise<{ body: string; connection: string | undefined }>((resolve, reject) => {
        http
          .get({ socketPath: path, path: '/', agent: false }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ body, connection: res.headers.connection }));
          })
          .on('error', reject);
      });
      await inHandler;
      const states: unknown[] = [];
      service.on('draining', (s) => states.push(s));
      const drained = service.drain();
      release();
      assert.deepEqual(await response, { body: 'done', connection: 'close' });
      assert.deepEqual(await drained, { forced: 0 });
      assert.deepEqual(states, [{ inFlight: 1, connections: 1 }]);
      assert.equal(server.listening, false);
    } finally {
      server.close();
      t.cleanup();
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  }));
