// fdpass/supervisor with a Node server written for systemd on fdpass/systemd,
// unchanged: reloads under wrk fail no request; failed reloads roll back; the
// watchdog and crashes restart; and bad input is refused, nothing leaked.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Supervisor, type SupervisorOptions } from 'fdpass/supervisor';
import { FdSocket } from 'fdpass';
import { noLeak, testDir } from '../../helpers.js';
import { needs } from '../../tools.js';
import { get, lines, next, nodeFixture, options, reloadsUnderLoad, started, startWrk } from './helpers.js';

describe('supervisor: a Node server on fdpass/systemd', needs('wrk'), () => {
  const node = (extra: Partial<SupervisorOptions> = {}): SupervisorOptions =>
    options({ command: process.execPath, args: [nodeFixture], ...extra });

  test('10 reloads under wrk, keep-alive: 0 failed requests', { timeout: 240_000 }, async () => {
    await reloadsUnderLoad(node(), 10, false);
  });

  test('10 reloads under wrk, Connection: close: 0 failed requests', { timeout: 240_000 }, async () => {
    await reloadsUnderLoad(node(), 10, true);
  });

  test(
    'a reload whose new process crashes, then one that never says READY=1: 0 failed, the old one still serves',
    { timeout: 240_000 },
    async (t) => {
      const dir = testDir(t);
      const modeFile = dir.path('mode');
      // readyTimeout is the bound the silent process runs into; the crashing
      // one must exit before it, which a slow start (an ASan run, a loaded
      // machine) took longer than 1.5 s to do: 15 s, generous, for both.
      const { sup, port } = await started(node({ env: { ...process.env, FIXTURE_MODE_FILE: modeFile }, readyTimeout: 15_000 }));
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
        await assert.rejects(sup.reload(), /was not ready \(READY=1\) within 15000 ms; rolled back/);
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

/** Whether process `pid` has ended (gone, or a zombie nobody reaped yet). */
function ended(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('supervisor: MAINPID= another process', () => {
  test(
    'a launcher exits once its server said MAINPID=: the service lives on; the main process dying restarts it; stop() ends it',
    { timeout: 120_000 },
    async (t) => {
      const modeFile = testDir(t).path('mode');
      writeFileSync(modeFile, 'launcher\n');
      const seen: string[] = [];
      let onLine = (): void => undefined;
      const logged = (re: RegExp): Promise<RegExpExecArray> =>
        new Promise((resolve) => {
          const check = (): void => {
            const m = seen.map((l) => re.exec(l)).find((x) => x);
            if (m) resolve(m);
          };
          const prev = onLine;
          onLine = () => (prev(), check());
          check();
        });
      const o = options({ command: process.execPath, args: [nodeFixture], env: { ...process.env, FIXTURE_MODE_FILE: modeFile } });
      const { sup, port } = await started({
        ...o,
        log: (l) => {
          seen.push(l);
          onLine();
        },
      });
      // Without MAINPID= tracking, the launcher's exit would end the service.
      const runsOn = (re: RegExp): Promise<number[]> =>
        Promise.race([
          logged(re).then((m) => m.map(Number)),
          next<[unknown]>(sup, 'exit').then(([s]) => assert.fail(`the service ended with its launcher: ${JSON.stringify(s)}`)),
        ]);
      try {
        const exits: unknown[] = [];
        sup.on('exit', (s) => exits.push(s));
        const [, launcher, main] = await runsOn(/pid (\d+) exited with code 0; its main process, pid (\d+), runs on/);
        assert.notEqual(launcher, main);
        assert.equal(sup.pid, main);
        assert.equal((await get(port)).pid, main, 'the main process serves');
        assert.deepEqual(exits, [], "the launcher's exit does not end the service");
        const restarted = next<[number]>(sup, 'ready');
        process.kill(main!, 'SIGKILL');
        const [status] = await next<[{ pid: number; code: number | null; signal: string | null }]>(sup, 'exit');
        assert.deepEqual(status, { pid: main, code: null, signal: 'SIGKILL' });
        await restarted;
        const [, , main2] = await runsOn(new RegExp(`pid (\\d+) exited with code 0; its main process, pid (?!${main}\\b)(\\d+), runs on`));
        assert.equal((await get(port)).pid, main2);
        const stopped = await sup.stop();
        assert.deepEqual(stopped, { pid: main2, code: 0, signal: null }, 'drained on SIGTERM through its pidfd');
        assert.ok(ended(main2!), `pid ${main2} ended`);
      } finally {
        await sup.stop();
      }
    },
  );
});

describe('supervisor: without a shell', () => {
  test('shell: null (an image without /bin/sh): the exec shim gives the program LISTEN_PID = its own pid and the listener at fd 3', async () => {
    const { sup, port } = await started(options({ command: process.execPath, args: [nodeFixture], shell: null }));
    try {
      // The fixture serves only if listenFds() accepted LISTEN_PID as its own pid.
      const pid = sup.pid!;
      assert.equal((await get(port)).pid, pid);
      assert.ok(
        lines.some((l) => l.includes(`pid ${pid}: ${process.execPath} ${nodeFixture}`)),
        lines.join('\n'),
      );
      // The old process accepts on the shared listener until it exits.
      const oldGone = next<[{ pid: number }]>(sup, 'exit', (s) => s.pid === pid);
      const newPid = await sup.reload();
      assert.notEqual(newPid, pid);
      await oldGone;
      assert.equal((await get(port)).pid, newPid);
    } finally {
      await sup.stop();
    }
  });

  test('shell: a bad value is a TypeError before anything starts', async () => {
    await assert.rejects(
      Supervisor.start(options({ command: process.execPath, shell: '' })),
      (err: Error & { code?: string }) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE',
    );
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
    'FDPOLL: a stored fd that hung up is dropped (and closed) when the store is read; FDPOLL=0 keeps it',
    { timeout: 120_000 },
    async () => {
      await noLeak(async () => {
        // Three socket pairs: one end of each stored; the other end of the
        // first two closed (the stored ends report POLLHUP), the third kept.
        const sender = `
        import { FdSocket } from 'fdpass';
        const sock = await FdSocket.connect({ abstract: process.env.NOTIFY_SOCKET.slice(1), type: 'dgram' });
        const [gone, keptPeer, alive] = [FdSocket.pair(), FdSocket.pair(), FdSocket.pair()];
        await sock.send('FDSTORE=1\\nFDNAME=gone', [gone[0].fd]);
        await sock.send('FDSTORE=1\\nFDNAME=kept\\nFDPOLL=0', [keptPeer[0].fd]);
        await sock.send('FDSTORE=1\\nFDNAME=alive', [alive[0].fd]);
        for (const s of [...gone, ...keptPeer]) await s.close();
        await sock.send('READY=1');
        setInterval(() => {}, 1000);
      `;
        const seen: string[] = [];
        const sup = await Supervisor.start({
          ...options({ command: process.execPath, args: ['--input-type=module', '-e', sender] }),
          log: (l) => seen.push(l),
        });
        try {
          await next(sup, 'ready');
          assert.deepEqual(sup.stored, { kept: 1, alive: 1 });
          assert.ok(
            seen.some((l) => /stored fd\(s\) of "gone" hung up \(POLLHUP or POLLERR\): dropped 1/.test(l)),
            seen.join('\n'),
          );
        } finally {
          await sup.stop();
        }
      });
    },
  );

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
