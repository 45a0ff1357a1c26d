// fdpass/cluster under a real PM2 (npm's pm2): examples/cluster-pm2 as the
// docs/cluster.md runs it. PM2's cluster mode starts two workers; the primary, a
// fork-mode app, finds them by its fixed channel name. CI installs pm2 from
// npm (.ci/run) and points FDPASS_PM2 at its CLI; elsewhere `pm2` on PATH is
// used, or the test is skipped with the install line (never under CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import http from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, repoRoot, tempDir } from '../../helpers.js';
import { inCI, which } from '../../tools.js';

const install = 'npm install --prefix /tmp/pm2 pm2 && export FDPASS_PM2=/tmp/pm2/node_modules/pm2/bin/pm2';
const pm2Path = process.env.FDPASS_PM2 ?? which('pm2');
const missing = pm2Path ? null : `pm2 not found (set FDPASS_PM2 or put it on PATH): ${install}`;
const example = join(repoRoot, 'examples', 'cluster-pm2');

/** One request; a connection no worker takes waits in the primary's backlog, so bounded. */
function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ port, host: '127.0.0.1', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body.trim()));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', reject);
  });
}

/** True once something accepts on the port. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`never: ${what}`);
}

if (missing && inCI) {
  test('PM2 cluster mode: examples/cluster-pm2', () => assert.fail(`CI=true and ${missing}`));
} else {
  test(
    'PM2 cluster mode: examples/cluster-pm2 serves round robin, and a killed worker PM2 restarts loses no request',
    { skip: missing ?? false, timeout: 90_000 },
    async (t) => {
      const home = tempDir('fdpass-pm2-');
      const port = await freePort();
      // The pm2 CLI runs on this Node, so its daemon and the apps do too.
      const pm2Cli = realpathSync(pm2Path!);
      const env = { ...process.env, PM2_HOME: home.dir, PORT: String(port), FDPASS_CLUSTER: `fdpass-pm2-test/${process.pid}/${port}` };
      const pm2 = (...args: string[]): string => {
        const r = spawnSync(process.execPath, [pm2Cli, ...args], { cwd: example, env, encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, `pm2 ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
        return r.stdout;
      };
      // The daemon first (it lives in PM2_HOME), then its folder. `pm2 kill`
      // left the daemon, the apps and the daemon's \`ps\` runs in a run under
      // ASan (the runner killed them): what is left of them afterwards (every
      // process with this PM2_HOME in its environment) is killed here.
      const mark = `PM2_HOME=${home.dir}\0`;
      t.after(() => {
        spawnSync(process.execPath, [pm2Cli, 'kill'], { cwd: example, env, encoding: 'utf8', timeout: 60_000 });
        for (const pid of readdirSync('/proc')
          .filter((d) => /^\d+$/.test(d))
          .map(Number)) {
          try {
            if (pid !== process.pid && readFileSync(`/proc/${pid}/environ`, 'latin1').includes(mark)) process.kill(pid, 'SIGKILL');
          } catch {
            // gone, or not ours to read
          }
        }
        home.cleanup();
      });

      pm2('start', 'ecosystem.config.cjs', '--only', 'primary');
      await until('the primary accepts', () => accepting(port));
      pm2('start', 'ecosystem.config.cjs', '--only', 'web');
      const list = (): { name: string; pid: number; status: string }[] =>
        (JSON.parse(pm2('jlist')) as { name: string; pid: number; pm2_env: { status: string; exec_mode: string } }[]).map((p) => ({
          name: p.name,
          pid: p.pid,
          status: p.pm2_env.status,
        }));
      const workers = list().filter((p) => p.name === 'web');
      assert.equal(workers.length, 2, 'PM2 runs two workers');

      // Both serve (the first requests may come before the second one's serve()).
      const seen = new Set<string>();
      await until('both PM2 workers answer', async () => {
        seen.add(await get(port));
        return seen.size === 2;
      });
      assert.deepEqual([...seen].map(Number).sort(), workers.map((w) => w.pid).sort(), 'the answers come from the PM2 workers');
      const counts = new Map<string, number>();
      for (let i = 0; i < 10; i++) {
        const pid = await get(port);
        counts.set(pid, (counts.get(pid) ?? 0) + 1);
      }
      assert.deepEqual([...counts.values()], [5, 5], 'round robin: 5 each');

      // SIGKILL one worker: PM2 starts another, and every request is answered.
      const victim = workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      const answers = await Promise.all(Array.from({ length: 20 }, () => get(port)));
      assert.ok(
        answers.every((a) => /^\d+$/.test(a)),
        `every request answered: ${answers.join(' ')}`,
      );
      await until('PM2 restarted the killed worker and it serves', async () => {
        const now = list().filter((p) => p.name === 'web' && p.status === 'online');
        if (now.length !== 2 || now.some((p) => p.pid === victim)) return false;
        const got = new Set(await Promise.all(Array.from({ length: 4 }, () => get(port))));
        return now.every((p) => got.has(String(p.pid)));
      });
    },
  );
}
