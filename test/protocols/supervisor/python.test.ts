// fdpass/supervisor with a real Python program written for systemd, unchanged.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../tools.js';
import { debianPython, fixtures, options, reloadsUnderLoad } from './helpers.js';

describe('supervisor: Python, unchanged', needs('wrk'), () => {
  // wrk counts every Connection: close response of Python's http.server as a
  // read error, with no reload and no fdpass: keep-alive, and a Node client.
  test(
    'Python on python3-systemd (listen_fds, notify): 10 reloads under wrk, 0 failed',
    { ...needs('python3-systemd'), timeout: 400_000 },
    async () => {
      assert.ok(
        (await reloadsUnderLoad(options({ command: debianPython, args: [`${fixtures}/python-server.py`] }), 10, false)) > 0,
        'answered through the reloads',
      );
      assert.ok(
        (await reloadsUnderLoad(options({ command: debianPython, args: [`${fixtures}/python-server.py`] }), 10, 'node-client')) > 0,
        'answered through the reloads',
      );
    },
  );
});
