// The README's quick start, as pasted, in this runtime.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChild, test } from './harness.mjs';

test(
  'the quick start runs as written and prints the host name',
  async () => {
    const pkg = fileURLToPath(import.meta.resolve('fdpass/package.json'));
    const readme = readFileSync(join(dirname(pkg), 'README.md'), 'utf8');
    const code = /```js\n([^]*?)```/.exec(readme.slice(readme.indexOf('## Quick start')))?.[1];
    assert.ok(code, 'no js block in the quick start');
    const r = await runChild(code);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `hostname ${readFileSync('/etc/hostname', 'utf8').trim()}\n`);
  },
  {
    only: ['node', 'bun'],
    why: "it reads and closes the received fd with node:fs, which Deno refuses (received.conf.mjs runs Deno's way)",
  },
);
