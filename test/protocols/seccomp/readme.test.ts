// The README's "seccomp agent in ten lines" runs as written against a real
// runc container: it answers the container's syscalls, refusing mkdir.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { docBlock, repoRoot, tempDir, until } from '../../helpers.js';
import { needs } from '../../tools.js';
import { makeRunc } from '../runc/bundle.js';

const runc = makeRunc();
after(() => runc.cleanup());

test('docs/runc.md: the seccomp agent in ten lines serves a real runc container', needs('runc', 'busybox-static', 'root'), async () => {
  const code = docBlock('docs/runc.md', '## A seccomp agent in ten lines');
  // Inside the package, so that 'fdpass' resolves to this checkout.
  const file = join(repoRoot, 'build-test', 'seccomp-ten-lines.mjs');
  writeFileSync(file, code);
  const t = tempDir();
  const id = runc.id();
  const socketPath = t.path('agent.sock');
  const agent = spawn(process.execPath, [file, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  agent.stdout.on('data', (d: Buffer) => (out += d));
  agent.stderr.on('data', (d: Buffer) => (err += d));
  const agentExit = new Promise((r) => agent.once('close', r));
  try {
    // Nothing but the file says the agent listens (the README's code prints nothing then).
    await until(() => existsSync(socketPath) || agent.exitCode !== null, "the agent's socket file, or its exit");
    assert.ok(existsSync(socketPath), `the agent did not listen: ${err}`);
    const bundle = runc.bundle((c) => {
      c.process.terminal = false;
      c.process.args = ['/bin/sh', '-c', 'mkdir /tmp/x; echo "mkdir=$?"; ls -d /tmp; echo "ls=$?"'];
      c.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        listenerPath: socketPath,
        syscalls: [{ names: ['mkdir', 'mkdirat', 'openat', 'stat', 'newfstatat', 'statx'], action: 'SCMP_ACT_NOTIFY' }],
      };
    });
    const { stdout, stderr } = await runc.run(['run', id], bundle);
    assert.equal(stdout, 'mkdir=1\n/tmp\nls=0\n');
    assert.match(stderr, /mkdir: can't create directory '\/tmp\/x': Operation not permitted/);
    assert.equal(out, `serving ${id}\n`);
    assert.equal(err, '');
  } finally {
    agent.kill('SIGTERM');
    await agentExit;
    runc.remove(id);
    rmSync(file, { force: true });
    t.cleanup();
  }
});
