import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FdServer } from 'fdpass';
import { sendConsole } from 'fdpass/runc';
import { delay, repoRoot, tempDir, until } from '../helpers.js';
import { OCI_RUNTIMES, RUNC, makeRunc } from '../protocols/runc/bundle.js';
import { have } from '../tools.js';

const cli = join(repoRoot, 'dist', 'cli', 'main.js');
const runc = makeRunc();
after(() => runc.cleanup());
const runtimes = OCI_RUNTIMES.map((rt) => [rt, rt === RUNC ? runc : makeRunc(rt)] as const);
after(() => runtimes.forEach(([, r]) => r.cleanup()));

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function finished(p: ChildProcess, limitMs = 60_000): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  p.stdout?.on('data', (d: Buffer) => (stdout += d));
  p.stderr?.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => p.kill('SIGKILL'), limitMs);
  return new Promise((resolve, reject) => {
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function recvtty(args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, [cli, 'recvtty', ...args], { stdio: [stdin, 'pipe', 'pipe'] });
  return { child, done: finished(child) };
}

/** Wait until the pid file is written whole: recvtty is listening then (nothing else says so). */
async function listening(pidFile: string): Promise<number> {
  const written = (): boolean => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n');
  await until(written, `recvtty wrote its pid file ${pidFile}`);
  return Number(readFileSync(pidFile, 'utf8').trim());
}

// Hosts a command on a real terminal: the pty's slave is its stdin, stdout
// and stderr. Prints RAW once the terminal leaves canonical mode and types
// "go" and Enter, then a JSON report once the command exits: exit status, whether the terminal settings
// are as before, and what the command wrote.
const ptyHost = `import os, pty, sys, termios, json, subprocess, select
m, s = pty.openpty()
before = termios.tcgetattr(s)
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s)
out, raw = b'', False
def drain(t):
    global out
    while select.select([m], [], [], t)[0]:
        try:
            d = os.read(m, 4096)
        except OSError:
            return
        if not d:
            return
        out += d
        t = 0
while p.poll() is None:
    if not raw and not (termios.tcgetattr(s)[3] & termios.ICANON):
        raw = True
        print('RAW', flush=True)
        os.write(m, b'go\\r')
    drain(0.02)
drain(0.1)
after = termios.tcgetattr(s)
print(json.dumps({'rc': p.returncode, 'restored': before == after, 'raw': raw, 'out': out.decode('utf8', 'replace')}), flush=True)
`;

// Hosts recvtty on a terminal of 100x30 that it controls (so that a resize
// sends it SIGWINCH). Once recvtty is attached (raw mode) it types a line per
// answer of the container's \`stty size\`; after the first answer it
// resizes to 120x50 and goes on until the container sees that, then ends the
// container with ^D. Prints a JSON report; every wait is bounded.
const sizeHost = `import os, pty, sys, termios, json, subprocess, select, fcntl, struct, re
m, s = pty.openpty()
def size(rows, cols):
    fcntl.ioctl(m, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
size(30, 100)
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s, start_new_session=True,
                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
out = b''
def read(t):
    global out
    if select.select([m], [], [], t)[0]:
        try:
            d = os.read(m, 4096)
        except OSError:
            return False
        out += d
        return len(d) > 0
    return True
def sizes():
    return re.findall(r'(?m)^(\\d+ \\d+)\\r*$', out.decode('utf8', 'replace'))
def wait(cond, limit=20):
    deadline = 0
    while not cond() and p.poll() is None and deadline < limit * 50:
        if not read(0.02):
            break
        deadline += 1
    return cond()
wait(lambda: not (termios.tcgetattr(s)[3] & termios.ICANON))
for i in range(200):
    n = len(sizes())
    os.write(m, b'\\r')
    if not wait(lambda: len(sizes()) > n):
        break
    if i == 0:
        size(50, 120)
    if sizes()[-1] == '50 120':
        break
os.write(m, b'\\x04')
try:
    p.wait(30)
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
read(0.1)
print(json.dumps({'rc': p.returncode, 'sizes': sizes(), 'out': out.decode('utf8', 'replace')}), flush=True)
`;

describe('fdpass recvtty', () => {
  // runc 1.1, runc 1.3 and crun: each sends its console with a name of its own.
  for (const [rt, runc] of runtimes) {
    test(`single mode with the real ${rt.name}: the container output on stdout, stdin to the container, exit 0`, async (ctx) => {
      if (!have(ctx, ...rt.needs)) return;
      const t = tempDir();
      const id = runc.id();
      const bundle = runc.bundle((c) => {
        c.process.terminal = true;
        c.process.args = ['/bin/sh', '-c', 'echo "hello from sh"; read line; echo "got:$line"'];
      });
      try {
        const sock = t.path('tty.sock');
        const pidFile = t.path('recvtty.pid');
        const r = recvtty(['--pid-file', pidFile, sock], 'pipe');
        assert.equal(await listening(pidFile), r.child.pid);
        await runc.run(['run', '-d', '--console-socket', sock, id], bundle);
        r.child.stdin!.write('typed line\n');
        const result = await r.done;
        assert.equal(result.stderr, '');
        assert.equal(result.code, 0);
        assert.match(result.stdout, /hello from sh\r\n/);
        assert.match(result.stdout, /got:typed line\r\n/);
        assert.equal(existsSync(sock), false, 'the socket file is removed');
      } finally {
        runc.remove(id);
        t.cleanup();
      }
    });
  }

  test('on a real terminal: raw mode while attached, restored at exit (normal end and SIGTERM)', async (ctx) => {
    if (!have(ctx, 'python3', 'runc', 'busybox-static', 'root')) return;
    const t = tempDir();
    const id = runc.id();
    const bundle = runc.bundle((c) => {
      c.process.terminal = true;
      // It ends once the host typed a line through recvtty: attached in raw mode until then.
      c.process.args = ['/bin/sh', '-c', 'echo container-says-hi; read x; echo "typed $x"'];
    });
    try {
      // Normal end: the container exits, the master gives EIO, recvtty exits 0.
      const sock = t.path('tty.sock');
      const pidFile = t.path('a.pid');
      const host = spawn('python3', ['-c', ptyHost, process.execPath, cli, 'recvtty', '--pid-file', pidFile, sock], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const hosted = finished(host);
      await listening(pidFile);
      await runc.run(['run', '-d', '--console-socket', sock, id], bundle);
      const report = JSON.parse((await hosted).stdout.split('\n').filter(Boolean).pop()!) as {
        rc: number;
        restored: boolean;
        raw: boolean;
        out: string;
      };
      assert.equal(report.rc, 0, report.out);
      assert.match(report.out, /container-says-hi/);
      assert.match(report.out, /typed go/, 'what the host typed reached the container');
      assert.equal(report.raw, true, 'raw mode while attached');
      assert.equal(report.restored, true);

      // SIGTERM while attached in raw mode (a pty master from our own sender).
      const sock2 = t.path('tty2.sock');
      const pidFile2 = t.path('b.pid');
      const host2 = spawn('python3', ['-c', ptyHost, process.execPath, cli, 'recvtty', '--pid-file', pidFile2, sock2], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const sawRaw = new Promise<void>((resolve) => host2.stdout.on('data', (d: Buffer) => d.includes('RAW') && resolve()));
      const hosted2 = finished(host2);
      const pid = await listening(pidFile2);
      const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
      await sendConsole(sock2, '/dev/pts/ptmx', master);
      closeSync(master);
      await sawRaw;
      process.kill(pid, 'SIGTERM');
      const report2 = JSON.parse((await hosted2).stdout.split('\n').filter(Boolean).pop()!) as typeof report;
      assert.equal(report2.raw, true);
      assert.equal(report2.rc, 128 + 15);
      assert.equal(report2.restored, true);
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });

  test('null mode drains detached containers so they never block, and stops on SIGTERM', async (ctx) => {
    if (!have(ctx, 'runc', 'busybox-static', 'root')) return;
    const t = tempDir();
    const ids = [runc.id(), runc.id()];
    // 200 KiB of output: far more than a pty buffers, so the container only
    // finishes if somebody reads it.
    const bundle = runc.bundle((c) => {
      c.process.terminal = true;
      c.process.args = [
        '/bin/sh',
        '-c',
        'i=0; while [ $i -lt 3000 ]; do echo "line $i of output that nobody wants to read"; i=$((i+1)); done',
      ];
    });
    try {
      const sock = t.path('null.sock');
      const pidFile = t.path('null.pid');
      const r = recvtty(['--mode', 'null', '--pid-file', pidFile, sock]);
      await listening(pidFile);
      for (const id of ids) await runc.run(['run', '-d', '--console-socket', sock, id], bundle);
      for (const id of ids) {
        // runc says nothing when a detached container ends: ask it every 50 ms, for up to 60 s.
        let status = '';
        for (const deadline = Date.now() + 60_000; status !== 'stopped' && Date.now() < deadline;) {
          status = (JSON.parse((await runc.run(['state', id])).stdout) as { status: string }).status;
          if (status !== 'stopped') await delay(50);
        }
        assert.equal(status, 'stopped', `container ${id} ran to its end within 60 s`);
      }
      r.child.kill('SIGTERM');
      const result = await r.done;
      assert.equal(result.code, 0);
      assert.equal(result.stdout, '');
      assert.equal(result.stderr, '');
      assert.equal(existsSync(sock), false);
    } finally {
      for (const id of ids) runc.remove(id);
      t.cleanup();
    }
  });

  test("the container's terminal takes our size at start and follows SIGWINCH", async (ctx) => {
    if (!have(ctx, 'python3', 'runc', 'busybox-static', 'root')) return;
    const t = tempDir();
    const id = runc.id();
    const bundle = runc.bundle((c) => {
      c.process.terminal = true;
      c.process.args = ['/bin/sh', '-c', 'while read x; do stty size; done'];
    });
    try {
      const sock = t.path('tty.sock');
      const pidFile = t.path('size.pid');
      const host = spawn('python3', ['-c', sizeHost, process.execPath, cli, 'recvtty', '--pid-file', pidFile, sock], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const hosted = finished(host);
      await listening(pidFile);
      await runc.run(['run', '-d', '--console-socket', sock, id], bundle);
      const result = await hosted;
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout) as { rc: number; sizes: string[]; out: string };
      assert.equal(report.rc, 0, report.out);
      // Input reaches the container only after the first resize: its first answer is our size.
      assert.equal(report.sizes[0], '30 100', report.out);
      assert.equal(report.sizes.at(-1), '50 120', report.out);
      assert.ok(
        report.sizes.every((s) => s === '30 100' || s === '50 120'),
        report.out,
      );
    } finally {
      runc.remove(id);
      t.cleanup();
    }
  });

  test('errors: one line on stderr and a non-zero exit; --help', async () => {
    const t = tempDir();
    try {
      const live = await FdServer.listen(t.path('busy.sock'));
      const inUse = await recvtty([live.path!]).done;
      assert.equal(inUse.code, 1);
      assert.match(inUse.stderr, /^fdpass recvtty: cannot listen on .*busy\.sock: .*EADDRINUSE.*\n$/);
      await live.close();

      const badPath = await recvtty([t.path('no/such/dir/x.sock')]).done;
      assert.equal(badPath.code, 1);
      assert.match(badPath.stderr, /^fdpass recvtty: cannot listen on .*ENOENT.*\n$/);

      const badMode = await recvtty(['--mode', 'double', t.path('x.sock')]).done;
      assert.equal(badMode.code, 2);
      assert.match(badMode.stderr, /^fdpass recvtty: --mode must be "single" or "null".*\n$/);

      const missing = await recvtty([]).done;
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /missing SOCKET/);

      const badPid = await recvtty(['--pid-file', t.path('no/dir/pid'), t.path('y.sock')]).done;
      assert.equal(badPid.code, 1);
      assert.match(badPid.stderr, /^fdpass recvtty: cannot write the pid file: .*\n$/);
      assert.equal(existsSync(t.path('y.sock')), false);

      const help = await recvtty(['--help']).done;
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Usage: fdpass recvtty \[--mode single\|null\] \[--pid-file FILE\] \[--no-stdin\] SOCKET/);
      const top = await finished(spawn(process.execPath, [cli, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] }));
      assert.equal(top.code, 0);
      assert.match(top.stdout, /recvtty/);
    } finally {
      t.cleanup();
    }
  });
});
