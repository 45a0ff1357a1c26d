// listenStored() outside systemd: it listens on the fallback, stores nothing,
// and drains like the handoff (in-flight requests finish with "Connection:
// close", the listener closes). Against a real systemd: real.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { listenStored } from 'fdpass/systemd';
import { isOpen, noLeak, repoRoot, tempDir } from '../../helpers.js';
import { JsonLines, exited, type Json } from '../../lines.js';
import { needs } from '../../tools.js';

type SockOps = typeof import('../../../dist/io/sockops.js');
type Address = typeof import('../../../dist/base/address.js');
type Native = typeof import('../../../dist/base/native.js');
const { listenSocket } = (await import(new URL(`file://${repoRoot}/dist/io/sockops.js`).href)) as SockOps;
const { encodeAddress } = (await import(new URL(`file://${repoRoot}/dist/base/address.js`).href)) as Address;
const { native } = (await import(new URL(`file://${repoRoot}/dist/base/native.js`).href)) as Native;

const claim = join(repoRoot, 'build-test', 'test', 'protocols', 'systemd', 'fixtures', 'claim.js');

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
        'systemd-socket-activate', // found on PATH, as needs() found it
        ['-l', http1, '-l', extra, '--fdname=http:extra', process.execPath, claim, mode],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const lines = new JsonLines(child);
      try {
        await lines.stderrHas([`Listening on ${extra}`]);
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

test('when storing fails, every server listenStored made listen is closed, with the fd it took, before the error surfaces', () =>
  noLeak(async () => {
    const saved = { NOTIFY_SOCKET: process.env.NOTIFY_SOCKET, LISTEN_PID: process.env.LISTEN_PID };
    const t = tempDir();
    // A listener "systemd passed" (by the fds option) and one made anew; the
    // notify socket is a path nobody listens on, so the first FDSTORE fails.
    const passed = listenSocket(encodeAddress({ path: t.path('passed.sock') }), native.SOCK_STREAM, 16, 0o600).fd;
    const inherited = http.createServer();
    const fresh = http.createServer();
    process.env.NOTIFY_SOCKET = t.path('no-manager.sock');
    delete process.env.LISTEN_PID;
    try {
      await assert.rejects(
        listenStored(
          [
            { server: inherited, name: 'passed' },
            { server: fresh, name: 'fresh', fallback: t.path('fresh.sock') },
          ],
          { fds: [{ fd: passed, name: 'passed' }], exit: false, handleSigterm: false },
        ),
        { code: 'ENOENT', syscall: 'connect' },
      );
      assert.equal(inherited.listening, false);
      assert.equal(fresh.listening, false);
      assert.equal(isOpen(passed), false, 'the passed fd went with its server');
    } finally {
      inherited.close();
      fresh.close();
      t.cleanup();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }));
