// A PID 1 reaps orphans: a process whose parent exited is reparented to the
// supervisor (PID 1, or here its subreaper), and must be waited for, or it
// stays a zombie. child_process waits only for its own children.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { killAtEnd, repoRoot, testDir, until } from '../../helpers.js';
import { exited } from '../../lines.js';

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

test('orphans of the supervised process are reaped (reapOrphans: a subreaper when not PID 1)', { timeout: 120_000 }, async (t) => {
  const dir = testDir(t);
  // Inside the package, so that 'fdpass/supervisor' resolves to this checkout.
  const script = join(repoRoot, 'build-test', `reaper-${process.pid}.mjs`);
  t.after(() => rmSync(script, { force: true }));
  writeFileSync(
    script,
    `import { Supervisor } from 'fdpass/supervisor';
const sup = await Supervisor.start({
  command: '/bin/sh',
  // The subshell starts a sleep and exits: the sleep is orphaned.
  args: ['-c', '(sleep 120 & echo $! > ${dir.path('orphan.pid')}); exec sleep 120'],
  ready: { delay: 0 }, reapOrphans: true, stdio: 'inherit',
});
process.on('SIGTERM', () => void sup.stop().then(() => process.exit(0)));
`,
  );
  const child = killAtEnd(t, spawn(process.execPath, [script], { stdio: 'inherit' }));
  const pidFile = dir.path('orphan.pid');
  await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'), 'the orphan started');
  const orphan = Number(readFileSync(pidFile, 'utf8'));
  t.after(() => {
    try {
      process.kill(orphan, 'SIGKILL');
    } catch {
      // gone
    }
  });
  // Reparented to the supervisor (its subreaper); once it exits, gone from
  // /proc: reaped, not a zombie.
  await until(() => parentOf(orphan) === child.pid, 'the orphan was reparented to the supervisor');
  process.kill(orphan, 'SIGKILL');
  await until(() => !existsSync(`/proc/${orphan}`), `the orphan ${orphan} was reaped (a zombie keeps its /proc entry)`);
  child.kill('SIGTERM');
  assert.equal(await exited(child), 0);
});
