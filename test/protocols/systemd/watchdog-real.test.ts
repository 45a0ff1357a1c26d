// watchdog() against a real service manager: Debian 12's systemd 252 as PID
// 1 of a systemd-nspawn container (test/protocols/systemd/container.ts), in a file of
// its own (Node 20's --test-timeout covers a whole file, and real.test.ts
// needs most of it). The services are test/protocols/systemd/fixtures/watchdog.ts.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { delay } from '../../helpers.js';
import { Container, needsContainer } from './container.js';

const FIXTURES = '/opt/fdpass/build-test/test/protocols/systemd/fixtures';
const NODE = '/usr/local/bin/node';

/** Poll until check() gives a value (a deadline for a broken setup, not a timing assertion). */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(100);
  }
}

describe('watchdog() against a real systemd 252 (systemd-nspawn)', needsContainer(), () => {
  let c: Container;
  before(
    async () => {
      c = await Container.boot();
    },
    { timeout: 1_500_000 }, // a fresh machine builds the root first (mmdebstrap)
  );
  after(async () => {
    await c?.stop();
  });

  test('watchdog(): a service that keeps pinging lives on; one that stops is killed by WatchdogSec= and restarted', async () => {
    const unit = (mode: string): string =>
      `[Service]\nType=notify\nWatchdogSec=2\nRestart=on-failure\nExecStart=${NODE} ${FIXTURES}/watchdog.js ${mode}\n`;
    await c.install({ 'fed.service': unit('feed'), 'starved.service': unit('starve') });
    await c.systemctl('start', 'fed.service', 'starved.service'); // both sent READY=1
    const fed = await c.show('fed.service', 'MainPID', 'StatusText', 'NRestarts');
    const starved = await c.show('starved.service', 'MainPID', 'StatusText');
    // WATCHDOG_USEC=2000000 and WATCHDOG_PID (the main pid) reached watchdog(): a ping every second.
    assert.equal(fed.StatusText, 'feed true 1000');
    assert.equal(starved.StatusText, 'starve true 1000');
    // The starved one stops pinging: systemd's watchdog runs out, kills it
    // (SIGABRT) and Restart=on-failure starts it again.
    const again = await until('the starved service restarted', async () => {
      const v = await c.show('starved.service', 'MainPID', 'NRestarts', 'SubState');
      return Number(v.NRestarts) >= 1 && v.SubState === 'running' && v.MainPID !== starved.MainPID ? v : undefined;
    });
    assert.notEqual(again.MainPID, '0');
    assert.match(await c.journal('starved.service'), /Watchdog timeout/);
    // Started with it, the fed one has outlived its own WatchdogSec= by now: untouched.
    assert.deepEqual(await c.show('fed.service', 'MainPID', 'NRestarts', 'SubState'), {
      MainPID: fed.MainPID,
      NRestarts: '0',
      SubState: 'running',
    });
    assert.doesNotMatch(await c.journal('fed.service'), /Watchdog timeout/);
    await c.systemctl('stop', 'fed.service', 'starved.service');
  });
});
