// fdpass/supervisor with a real Go program written for systemd, unchanged.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../tools.js';
import { buildGoServer, options, reloadsUnderLoad } from './helpers.js';

describe('supervisor: Go, unchanged', needs('wrk'), () => {
  // Go's http.Server.Shutdown closes idle keep-alive connections, which races
  // with a client sending its next request on one (wrk saw read errors so,
  // from the old process's shutdown, not from the handover): Connection: close.
  test(
    'Go on go-systemd (activation.Listeners, daemon.SdNotify): 10 reloads under wrk, 0 failed',
    { ...needs('go-systemd'), timeout: 400_000 },
    async () => {
      const answered = await reloadsUnderLoad(options({ command: buildGoServer() }), 10, true);
      assert.ok(answered > 0, 'the Go server answered through the reloads');
    },
  );
});
