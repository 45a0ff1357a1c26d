// fdpass/supervisor against real programs written for systemd, unchanged:
// a Node server on fdpass/systemd, a Go server on go-systemd, a Python server
// on python3-systemd, gunicorn, uwsgi. Reloads under wrk must fail no request.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Supervisor, type SupervisorOptions } from 'fdpass/supervisor';
import { FdSocket } from 'fdpass';
import { noLeak, testDir } from '../helpers.js';
import { needs } from '../tools.js';
import { buildGoServer, debianPython, fixtures, get, next, nodeFixture, startGetLoad, startWrk } from './helpers.js';

const lines: string[] = [];
function options(extra: Partial<SupervisorOptions> & Pick<SupervisorOptions, 'command'>): SupervisorOptions {
  return { listeners: [{ host: '127.0.0.1', port: 0, name: 'http' }], stdio: 'ignore', log: (l) => lines.push(l), ...extra };
}

async function started(o: SupervisorOptions): Promise<{ sup: Supervisor; port: number }> {
  const sup = await Supervisor.start(o);
  const ready = next(sup, 'ready');
  const failed = next(sup, 'exit');
  const first = await Promise.race([ready, failed.then(() => null)]);
  if (first === null) {
    await sup.stop();
    throw new Error(`the first process exited before it was ready:\n${lines.join('\n')}`);
  }
  return { sup, port: sup.sockets[0]!.port! };
}

/** Reload `n` times under wrk; every reload must succeed, every request must be answered 2xx. */
async function reloadsUnderLoad(o: SupervisorOptions, n: number, close: boolean | 'node-client', forks = false): Promise<void> {
  const { sup, port } = await started(o);
  try {
    const first = (await get(port)).pid;
    const wrk = close === 'node-client' ? startGetLoad(port) : startWrk(port, { close });
    await get(port);
    const pids = new Set<unknown>([first]);
    let oldExited: Promise<unknown> = Promise.resolve();
    for (let i = 0; i < n; i++) {
      const old = sup.pid;
      oldExited = next<[{ pid: number }]>(sup, 'exit', (s) => s.pid === old);
      pids.add(await sup.reload());
    }
    // Once the last old process is gone, requests reach the new one only.
    await oldExited;
    const last = (await get(port)).pid;
    const r = await wrk.stop();
    assert.ok(r.requests > 0, r.text);
    assert.equal(r.socketErrors, 0, `socket errors:\n${r.text}\n${lines.join('\n')}`);
    assert.equal(r.non2xx, 0, r.text);
    assert.equal(pids.size, n + 1);
    // A program that forks workers (gunicorn) answers from their pids.
    if (!forks) assert.equal(last, sup.pid);
    console.log(
      `# ${o.command} ${o.args?.join(' ') ?? ''}: ${n} reloads, ${close === 'node-client' ? 'a Node client, one request per connection' : close ? 'Connection: close' : 'keep-alive'}: ${r.requests} requests, 0 failed`,
    );
  } finally {
    await sup.stop();
  }
}

describe('supervisor: a Node server on fdpass/systemd', needs('wrk'), () => {
  const node = (extra: Partial<SupervisorOptions> = {}): SupervisorOptions =>
    options({ command: process.execPath, args: [nodeFixture], ...extra });

  test('10 reloads under wrk, keep-alive: 0 failed requests', { timeout: 240_000 }, () => reloadsUnderLoad(node(), 10, false));

  test('10 reloads under wrk, Connection: close: 0 failed requests', { timeout: 240_000 }, () => reloadsUnderLoad(node(), 10, true));

  test(
    'a reload whose new process crashes, then one that never says READY=1: 0 failed, the old one still serves',
    { timeout: 240_000 },
    async (t) => {
      const dir = testDir(t);
      const modeFile = dir.path('mode');
      const { sup, port } = await started(node({ env: { ...process.env, FIXTURE_MODE_FILE: modeFile }, readyTimeout: 1500 }));
      try {
        const pid = sup.pid;
        const wrk = startWrk(port);
        await get(port);
        writeFileSync(modeFile, 'crash\n');
        await assert.rejects(sup.reload(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_FDPASS_RELOAD_FAILED');
          assert.match(err.message, /exited with code 1 before it was ready; rolled back/);
          return true;
        });
        assert.equal(sup.pid, pid);
        writeFileSync(modeFile, 'silent\n');
        await assert.rejects(sup.reload(), /was not ready \(READY=1\) within 1500 ms; rolled back/);
        assert.equal(sup.pid, pid);
        assert.equal((await get(port)).pid, pid);
        const r = await wrk.stop();
        assert.equal(r.socketErrors + r.non2xx, 0, r.text);
        assert.ok(r.requests > 0);
        // No respawn loop: nothing else was started.
        writeFileSync(modeFile, 'serve\n');
        assert.notEqual(await sup.reload(), pid);
      } finally {
        await sup.stop();
      }
    },
  );

  test('the watchdog restarts a process that stopped sending WATCHDOG=1', { timeout: 120_000 }, async (t) => {
    const dir = testDir(t);
    const modeFile = dir.path('mode');
    writeFileSync(modeFile, 'watchdog\n');
    const { sup, port } = await started(node({ env: { ...process.env, FIXTURE_MODE_FILE: modeFile }, watchdog: 1000 }));
    try {
      const pid = sup.pid!;
      writeFileSync(modeFile, 'serve\n');
      const [status] = await next<[{ pid: number; signal: string | null }]>(sup, 'exit');
      assert.equal(status.pid, pid);
      assert.equal(status.signal, 'SIGABRT');
      const [newPid] = await next<[number]>(sup, 'ready');
      assert.notEqual(newPid, pid);
      assert.equal((await get(port)).pid, newPid);
      assert.ok(lines.some((l) => l.includes(`watchdog: pid ${pid} sent no WATCHDOG=1`)));
    } finally {
      await sup.stop();
    }
  });

  test('a crash restarts the process with the same listener; the store comes back with it', { timeout: 120_000 }, async () => {
    const { sup, port } = await started(node());
    try {
      const pid = sup.pid!;
      assert.deepEqual(sup.stored, { http: 1 });
      process.kill(pid, 'SIGKILL');
      const [newPid] = await next<[number]>(sup, 'ready');
      assert.notEqual(newPid, pid);
      assert.equal((await get(port)).pid, newPid);
      assert.deepEqual(sup.stored, { http: 1 });
    } finally {
      await sup.stop();
    }
  });
});

describe('supervisor: programs of other languages, unchanged', needs('wrk'), () => {
  // Go's http.Server.Shutdown closes idle keep-alive connections, which races
  // with a client sending its next request on one (wrk saw read errors so,
  // from the old process's shutdown, not from the handover): Connection: close.
  test(
    'Go on go-systemd (activation.Listeners, daemon.SdNotify): 10 reloads under wrk, 0 failed',
    { ...needs('go-systemd'), timeout: 400_000 },
    async () => {
      await reloadsUnderLoad(options({ command: buildGoServer() }), 10, true);
    },
  );

  // wrk counts every Connection: close response of Python's http.server as a
  // read error, with no reload and no fdpass: keep-alive, and a Node client.
  test(
    'Python on python3-systemd (listen_fds, notify): 10 reloads under wrk, 0 failed',
    { ...needs('python3-systemd'), timeout: 400_000 },
    async () => {
      await reloadsUnderLoad(options({ command: debianPython, args: [`${fixtures}/python-server.py`] }), 10, false);
      await reloadsUnderLoad(options({ command: debianPython, args: [`${fixtures}/python-server.py`] }), 10, 'node-client');
    },
  );

  test(
    'gunicorn (its own LISTEN_FDS and READY=1): 10 reloads under wrk, 0 failed',
    { ...needs('gunicorn'), timeout: 400_000 },
    async () => {
      const o = options({ command: 'gunicorn', args: ['--workers', '2', '--chdir', fixtures, 'wsgi_app:app'] });
      await reloadsUnderLoad(o, 10, false, true);
      await reloadsUnderLoad(o, 10, true, true);
    },
  );

  // uwsgi maps LISTEN_FDS to its sockets itself and says READY=1 once its
  // master runs; SIGTERM stops it gracefully with its documented hook. Its
  // HTTP protocol closes each connection after one response without saying
  // so, which wrk counts as a read error with no reload at all: a Node client.
  test('uwsgi (its own LISTEN_FDS and READY=1): 10 reloads under load, 0 failed', { ...needs('uwsgi'), timeout: 400_000 }, async () => {
    const args = ['--plugin', 'python3', '--protocol', 'http', '--chdir', fixtures, '--wsgi-file', 'wsgi_app.py', '--callable', 'app'];
    args.push('--master', '--processes', '2', '--hook-master-start', 'unix_signal:15 gracefully_kill_them_all');
    await reloadsUnderLoad(options({ command: 'uwsgi', args }), 10, 'node-client', true);
  });
});

describe('supervisor: bad input', () => {
  test('a command that does not exist: ERR_FDPASS_NO_COMMAND, nothing opened', async () => {
    await noLeak(async () => {
      await assert.rejects(
        Supervisor.start(options({ command: 'fdpass-no-such-command' })),
        (err: Error & { code?: string }) =>
          err.code === 'ERR_FDPASS_NO_COMMAND' && /fdpass-no-such-command: command not found/.test(err.message),
      );
    });
  });

  test('a port in use: EADDRINUSE naming the port, nothing left open', async () => {
    const { sup, port } = await started(options({ command: process.execPath, args: [nodeFixture] }));
    try {
      await noLeak(async () => {
        await assert.rejects(
          Supervisor.start(options({ command: process.execPath, listeners: [`127.0.0.1:${port}`] })),
          (err: Error & { code?: string }) => err.code === 'EADDRINUSE' && err.message.includes(`port ${port} is in use`),
        );
      });
    } finally {
      await sup.stop();
    }
  });

  test(
    'malformed notifications, 253 fds to the store, a stranger: each refused with a reason, their fds closed',
    { timeout: 120_000 },
    async () => {
      await noLeak(async () => {
        const sender = `
        import { FdSocket } from 'fdpass';
        import { openSync } from 'node:fs';
        const sock = await FdSocket.connect({ abstract: process.env.NOTIFY_SOCKET.slice(1), type: 'dgram' });
        const fd = openSync('/dev/null', 'r');
        const sends = [
          ['x'.repeat(5000)], ['READY=1\\0'], ['no equals sign'], ['\\xff\\xfe'],
          ['STATUS=fds without a store', [fd]], ['FDSTORE=1\\nFDNAME=bad:name', [fd]], ['FDSTORE=1'],
          ['FDSTORE=1\\nFDNAME=many', new Array(253).fill(fd)], ['BARRIER=1'], ['MAINPID=1'],
        ];
        for (const [text, fds] of sends) await sock.send(Buffer.from(text, text.startsWith('\\xff') ? 'latin1' : 'utf8'), fds);
        await sock.send('READY=1');
        setInterval(() => {}, 1000);
      `;
        const refused: string[] = [];
        const sup = await Supervisor.start(
          options({ command: process.execPath, args: ['--input-type=module', '-e', sender], fdStoreMax: 64 }),
        );
        sup.on('refused', (_pid, reason) => refused.push(reason));
        try {
          await next(sup, 'ready');
          // A stranger (this process) is refused too.
          const stranger = await FdSocket.connect({ abstract: sup.notifySocket.slice(1), type: 'dgram' });
          const strangerRefused = next<[number, string]>(sup, 'refused');
          await stranger.send('READY=1');
          await stranger.close();
          assert.match((await strangerRefused)[1], /not a supervised process/);
          const expected = [
            /longer than 4096 bytes/,
            /NUL byte/,
            /without KEY=VALUE/,
            /not UTF-8/,
            /1 fd\(s\) without FDSTORE=1 or BARRIER=1/,
            /FDNAME="bad:name" is not a valid name/,
            /FDSTORE=1 without fds/,
            /FDSTORE=1 with 253 fd\(s\): the store holds 0 of at most 64/,
            /BARRIER=1 with 0 fds/,
            /MAINPID=1 is not a process of pid/,
            /not a supervised process/,
          ];
          assert.equal(refused.length, expected.length, refused.join('\n'));
          expected.forEach((re, i) => assert.match(refused[i]!, re));
          assert.deepEqual(sup.stored, {});
        } finally {
          await sup.stop();
        }
      });
    },
  );
});
