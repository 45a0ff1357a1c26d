import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { FdSocket, type FdPassError, type PeerCredentials } from 'fdpass';
import { listenConsoleSocket, sendConsole, PtyStream, type ReceivedConsole } from 'fdpass/runc';
import { fdTarget, isOpen, noLeak, openFds, tempDir, until } from '../../helpers.js';
import { OCI_RUNTIMES, makeRunc } from './bundle.js';
import { errors, pythonPeer } from './peers.js';
import { needs } from '../../tools.js';

const runc = makeRunc();
after(() => runc.cleanup());

/** Everything a PtyStream gives, from the start: wait for text, or for its end. */
function collect(pty: PtyStream): { waitFor: (re: RegExp) => Promise<string>; ended: Promise<string> } {
  let out = '';
  let checks: (() => void)[] = [];
  const ended = new Promise<string>((resolve) => pty.once('end', () => resolve(out)));
  let done = false;
  void ended.then(() => {
    done = true;
    for (const c of checks) c();
  });
  pty.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    for (const c of checks) c();
  });
  return {
    ended,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (re.test(out)) resolve(out);
          else if (done) reject(new Error(`the pty ended before ${re}: ${JSON.stringify(out)}`));
          else return;
          checks = checks.filter((c) => c !== check);
        };
        checks.push(check);
        check();
      }),
  };
}

// Every OCI runtime sends the pty master with a name of its own: runc 1.1
// '/dev/ptmx', runc 1.3 '/dev/pts/ptmx', crun ' ' (one space).
for (const rt of OCI_RUNTIMES) {
  const runc = makeRunc(rt);
  after(() => runc.cleanup());
  describe(`listenConsoleSocket with the real ${rt.name}`, needs(...rt.needs), () => {
    test(`${rt.kind} run -d --console-socket: a working pty master (read output, write input)`, async () => {
      const t = tempDir();
      const id = runc.id();
      const bundle = runc.bundle((c) => {
        c.process.terminal = true;
        c.process.args = ['/bin/sh', '-c', 'echo ready; read line; echo "got:$line"'];
      });
      try {
        await noLeak(async () => {
          const listener = await listenConsoleSocket(t.path('console.sock'));
          const running = runc.run(['run', '-d', '--console-socket', listener.path, id], bundle);
          const c = (await listener.next()) as ReceivedConsole;
          await running;
          await listener.close();
          // Opaque, as sent.
          if (rt.kind === 'crun') assert.equal(c.name, ' ');
          else assert.match(c.name, /^\/dev\/(pts\/)?ptmx$/);
          assert.equal(c.peer.uid, 0);
          assert.equal(fdTarget(c.fd), '/dev/pts/ptmx');
          const pty = new PtyStream(c.fd);
          const output = collect(pty);
          await output.waitFor(/ready\r\n/);
          pty.write('hello pty\r');
          await output.waitFor(/got:hello pty\r\n/);
          // The container exits: EIO on the master ends the stream.
          assert.match(await output.ended, /^ready\r\nhello pty\r\ngot:hello pty\r\n$/);
          pty.destroy();
          await new Promise((r) => pty.once('close', r));
          assert.equal(isOpen(c.fd), false);
        });
      } finally {
        runc.remove(id);
        t.cleanup();
      }
    });
  });
}

describe('PtyStream window size', () => {
  test(
    'runc create, resize the console, runc start: the container sees the size it was given',
    needs('runc', 'busybox-static', 'root'),
    async () => {
      const t = tempDir();
      const id = runc.id();
      const bundle = runc.bundle((c) => {
        c.process.terminal = true;
        c.process.args = ['/bin/sh', '-c', 'stty size'];
      });
      try {
        await noLeak(async () => {
          const listener = await listenConsoleSocket(t.path('console.sock'));
          const creating = runc.run(['create', '--console-socket', listener.path, id], bundle);
          const c = (await listener.next()) as ReceivedConsole;
          await creating;
          await listener.close();
          const pty = new PtyStream(c.fd);
          const output = collect(pty);
          // A runc console starts at 0x0 (busybox stty fails on that).
          assert.deepEqual(pty.getWindowSize(), { cols: 0, rows: 0 });
          pty.resize(100, 40);
          assert.deepEqual(pty.getWindowSize(), { cols: 100, rows: 40 });
          await runc.run(['start', id]);
          assert.equal(await output.ended, '40 100\r\n');
          pty.destroy();
          await new Promise((r) => pty.once('close', r));
          assert.throws(() => pty.resize(1, 1), { code: 'ERR_FDPASS_CLOSED' });
          assert.throws(() => pty.getWindowSize(), { code: 'ERR_FDPASS_CLOSED' });
        });
      } finally {
        runc.remove(id);
        t.cleanup();
      }
    },
  );

  test('resize: arguments checked before the ioctl; ENOTTY on an fd that is no terminal', async () => {
    await noLeak(async () => {
      const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
      const pty = new PtyStream(master);
      for (const [cols, rows] of [
        [-1, 1],
        [1, 65536],
        [1.5, 2],
      ] as const) {
        assert.throws(() => pty.resize(cols, rows), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      }
      assert.throws(() => pty.resize('80' as unknown as number, 24), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      pty.resize(65535, 0);
      assert.deepEqual(pty.getWindowSize(), { cols: 65535, rows: 0 });
      pty.destroy();
      const [a, b] = FdSocket.pair();
      await b.close();
      const file = new PtyStream(a.release());
      assert.throws(() => file.resize(80, 24), { code: 'ENOTTY', syscall: 'ioctl' });
      assert.throws(() => file.getWindowSize(), { code: 'ENOTTY' });
      file.destroy();
      await new Promise((r) => file.once('close', r));
    });
  });
});

describe('console listener against bad peers', () => {
  test('no fd, two fds, early close, silence: coded errors, fds closed, and the listener keeps serving', needs('python3'), async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const listener = await listenConsoleSocket(t.path('c.sock'), { timeout: 300 });
        const errs = errors(listener);
        const send = (body: string): Promise<FdPassError> => {
          const e = errs.next();
          return pythonPeer(listener.path, body).then(() => e);
        };
        assert.equal((await send(`s.sendall(b'/dev/ptmx')`)).code, 'ERR_FDPASS_NO_FD');
        const two = await send(`fd = os.open('/dev/null', os.O_RDONLY)\nsocket.send_fds(s, [b'/dev/ptmx'], [fd, fd])`);
        assert.equal(two.code, 'ERR_FDPASS_TOO_MANY_FDS');
        assert.equal((await send('s.close()')).code, 'ERR_FDPASS_EOF');
        const slow = errs.next();
        const silent = await FdSocket.connect(listener.path);
        assert.equal((await slow).code, 'ERR_FDPASS_TIMEOUT');
        await silent.close();
        // The listener still serves: our own sender with a real pty master.
        const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
        await sendConsole(listener.path, 'orphan-pts-master', master);
        closeSync(master);
        const c = (await listener.next()) as ReceivedConsole;
        assert.equal(c.name, 'orphan-pts-master');
        assert.equal(fdTarget(c.fd), '/dev/ptmx');
        closeSync(c.fd);
        assert.equal(errs.list.length, 4);
        assert.ok(errs.list.every((e) => e.peer === null || e.peer.pid > 0));
        await listener.close();
      });
    } finally {
      t.cleanup();
    }
  });

  test('close() unlinks the socket, closes consoles nobody took and ends iterators', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const listener = await listenConsoleSocket(t.path('c.sock'), { mode: 0o660 });
        const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
        const client = await FdSocket.connect(listener.path);
        await sendConsole(client, '/dev/pts/ptmx', master);
        await client.close();
        closeSync(master);
        // Wait until the console is received and queued, then close without taking it.
        const waiter = (async () => {
          const got: ReceivedConsole[] = [];
          for await (const c of listener) {
            got.push(c);
            break;
          }
          return got;
        })();
        const [first] = await waiter;
        assert.equal(first!.name, '/dev/pts/ptmx');
        closeSync(first!.fd);
        const iterating = (async () => {
          let n = 0;
          for await (const c of listener) {
            closeSync(c.fd);
            n++;
          }
          return n;
        })();
        await listener.close();
        assert.equal(await iterating, 0);
        await assert.rejects(FdSocket.connect(listener.path), { code: 'ENOENT' });

        // Consoles nobody took: two arrive, the test takes one, close() closes the other.
        const second = await listenConsoleSocket(t.path('c2.sock'));
        for (const name of ['/dev/pts/ptmx', '/dev/pts/ptmx-2']) {
          const fd = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
          await sendConsole(second.path, name, fd);
          closeSync(fd);
        }
        const ptmxFds = (): number[] => openFds().filter((fd) => fdTarget(fd) === '/dev/ptmx');
        // Nothing signals a console received but not taken: the listener
        // holds both fds once it has read both connections.
        await until(() => ptmxFds().length === 2, 'the listener received both consoles');
        const taken = (await second.next()) as ReceivedConsole;
        assert.match(taken.name, /^\/dev\/pts\/ptmx(-2)?$/);
        closeSync(taken.fd);
        assert.equal(ptmxFds().length, 1, 'the console nobody took is queued, open');
        await second.close();
        assert.deepEqual(ptmxFds(), [], 'close() closed the console nobody took');
      });
    } finally {
      t.cleanup();
    }
  });

  test('allow(peer) refuses connections before anything is read', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        const seen: PeerCredentials[] = [];
        const listener = await listenConsoleSocket(t.path('c.sock'), {
          allow: (peer) => {
            seen.push(peer);
            return seen.length > 1;
          },
        });
        const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
        // The first connection is refused: its message is never read.
        await sendConsole(listener.path, 'refused', master);
        await sendConsole(listener.path, 'accepted', master);
        closeSync(master);
        const c = (await listener.next()) as ReceivedConsole;
        assert.equal(c.name, 'accepted');
        closeSync(c.fd);
        assert.equal(seen[0]!.pid, process.pid);
        await listener.close();
      });
    } finally {
      t.cleanup();
    }
  });

  test('bad arguments throw before anything is sent', async () => {
    await assert.rejects(sendConsole('/nonexistent/x.sock', 'x'.repeat(4096), 0), { code: 'ERR_FDPASS_NAME_TOO_LONG' });
    await assert.rejects(sendConsole(42 as unknown as string, 'x', 0), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(listenConsoleSocket('/tmp/x.sock', { timeout: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  });
});
