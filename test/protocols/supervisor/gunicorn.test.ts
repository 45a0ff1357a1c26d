// fdpass/supervisor with a real gunicorn program written for systemd, unchanged.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../tools.js';
import { fixtures, options, reloadsUnderLoad } from './helpers.js';

describe('supervisor: gunicorn, unchanged', needs('wrk'), () => {
  test(
    'gunicorn (its own LISTEN_FDS and READY=1): 10 reloads under wrk, keep-alive, 0 failed',
    { ...needs('gunicorn'), timeout: 400_000 },
    async () => {
      const o = options({ command: 'gunicorn', args: ['--workers', '2', '--chdir', fixtures, 'wsgi_app:app'] });
      assert.ok((await reloadsUnderLoad(o, 10, false, true)) > 0, 'answered through the reloads');
    },
  );
});
