// fdpass/supervisor with a real gunicorn program written for systemd, unchanged
// (a file of its own: Node 20's test timeout covers a whole file).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../tools.js';
import { fixtures, options, reloadsUnderLoad } from './helpers.js';

describe('supervisor: gunicorn, unchanged, Connection: close', needs('wrk'), () => {
  test(
    'gunicorn (its own LISTEN_FDS and READY=1): 10 reloads under wrk, Connection: close, 0 failed',
    { ...needs('gunicorn'), timeout: 400_000 },
    async () => {
      const o = options({ command: 'gunicorn', args: ['--workers', '2', '--chdir', fixtures, 'wsgi_app:app'] });
      assert.ok((await reloadsUnderLoad(o, 10, true, true)) > 0, 'answered through the reloads');
    },
  );
});
