// The test infrastructure itself (scripts/test.mjs, test/tools.ts,
// test/helpers.ts), run on small fixture files: a missing tool is a skip with
// the reason and the apt-get line, and a failure under CI=true; a Node warning
// fails the run; what a failed test leaves behind is cleared.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, testDir, until } from '../helpers.js';

const fixtures = join(repoRoot, 'build-test', 'test', 'fixtures', 'runner');

function run(fixture: string, given: NodeJS.ProcessEnv): { status: number | null; out: string } {
  const env = { ...given };
  delete env.NODE_TEST_CONTEXT; // set by the runner around us: a nested run would refuse to start
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'test.mjs'), join(fixtures, `${fixture}.js`)], {
    cwd: repoRoot,
    env,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('scripts/test.mjs', () => {
  // A PATH without runc (nor anything else): node is process.execPath.
  const noTools = (t: { after: (fn: () => void) => void }): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: testDir(t).dir };
    delete env.CI;
    return env;
  };

  test('a missing tool: skipped with the reason, one summary with the apt-get line, and the run passes', (t) => {
    const r = run('needs-runc', noTools(t));
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SKIP needs runc \(runc not found on PATH\): apt-get install -y runc/);
    assert.match(r.out, /== 2 skipped/);
    assert.match(r.out, /runc: runc not found on PATH; 2 skipped \(package runc\)/);
    assert.match(r.out, /To run them all:\n\s+apt-get install -y runc\n/);
  });

  for (const ci of ['true', '1']) {
    test(`under CI=${ci} a missing tool fails the run, and nothing waits for it`, (t) => {
      const r = run('needs-runc', { ...noTools(t), CI: ci });
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, /CI=true, so a missing tool fails instead of skipping: needs runc/);
      // needs(): a failing test named after the tool, the test itself skipped; have(): the test fails.
      assert.match(r.out, /not ok \d+ - CI=true: missing runc/);
      assert.match(r.out, /not ok \d+ - a test that finds out inside/);
      assert.match(r.out, /CI=true: 1 could not run for a missing tool or privilege, so the run fails/);
    });
  }

  test('a Node warning fails the run, which names it', () => {
    const r = run('warns', process.env);
    assert.equal(r.status, 1, r.out);
    assert.match(
      r.out,
      /== Node printed 1 warning\(s\); a run with warnings fails:\n.*warns\.js: \(node:\d+\) Warning: a warning from the fixture/,
    );
  });

  test('a failed test leaves nothing: helpers clear its dir and child at exit, the runner kills what escaped', async () => {
    const r = run('leaves', process.env);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /failed on purpose/);
    assert.doesNotMatch(r.out, /left \d+ folder/, 'the temp dir was removed at exit');
    assert.doesNotMatch(r.out, /sleep 300\b/, 'the direct child was killed by helpers at exit');
    const escaped = /the tests left 1 process\(es\) running \(killed now\):\n\s+(\d+) sleep 301/.exec(r.out);
    assert.ok(escaped, 'the escaped grandchild is reported');
    const gone = (): boolean => {
      try {
        return / Z /.test(readFileSync(`/proc/${escaped[1]}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    await until(gone, 'the escaped grandchild killed by the runner');
  });
});
