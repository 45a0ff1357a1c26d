// Node conventions across the modules: `await using` (Symbol.asyncDispose) on
// listeners and the handoff, AbortSignal on the listeners' waits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync } from 'node:fs';
import { listenConsoleSocket, sendConsole } from 'fdpass/runc';
import { Handoff } from 'fdpass/handoff';
import { noLeak, tempDir } from '../helpers.js';

describe('conventions', () => {
  it('RuncListener.next({ signal }): abort rejects with AbortError, the value goes to the next caller', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        await using listener = await listenConsoleSocket(t.path('console.sock'));
        const controller = new AbortController();
        const waiting = listener.next({ signal: controller.signal });
        controller.abort();
        await assert.rejects(waiting, { name: 'AbortError', code: 'ABORT_ERR' });
        await assert.rejects(listener.next({ signal: AbortSignal.abort() }), { name: 'AbortError' });
        await assert.rejects(listener.next({ signal: 'no' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });

        const fd = openSync('/dev/null', 'r');
        const sent = sendConsole(listener.path, '/dev/ptmx', fd);
        const got = await listener.next({ signal: AbortSignal.timeout(30_000) });
        await sent;
        closeSync(fd);
        assert.equal(got?.name, '/dev/ptmx');
        closeSync(got!.fd);
      });
      assert.ok(!existsSync(t.path('console.sock')), 'await using closed the listener and unlinked its file');
    } finally {
      t.cleanup();
    }
  });

  it('await using closes a Handoff: its control socket is gone at the end of the scope', async () => {
    const t = tempDir();
    try {
      await noLeak(async () => {
        {
          await using handoff = await Handoff.start({ path: t.path('control.sock'), exit: false });
          await handoff.ready();
          assert.ok(existsSync(t.path('control.sock')));
        }
        assert.ok(!existsSync(t.path('control.sock')));
      });
    } finally {
      t.cleanup();
    }
  });
});
