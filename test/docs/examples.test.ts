// The recipes in examples/ run and print what docs/recipes.md says (the guides'
// own code blocks run in readme.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';
import { needs, type Need } from '../tools.js';

describe('examples in docs/recipes.md', () => {
  it('examples/memfd.mjs: a memfd from a python3 peer, read here', needs('python3'), () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'examples', 'memfd.mjs')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'shared-buffer /memfd:shared-buffer (deleted)\nhello from a memfd\n');
  });
  const recipes: [string, string, Need[]][] = [
    ['cluster', '6 requests, round robin: 3 + 3\nafter a SIGKILL: 4 of 4 answered, worker 3 forked\n', []],
    ['shm-ring', 'reader: 1000 messages, 10890 bytes through a 4096-byte ring\nreader: the last one: "message 999"\n', []],
    ['privilege-separation', 'uid 65534 read "only root may open this" (direct open: EACCES)\n', ['root']],
    ['runc-console', '/dev/pts/ptmx: hello from the container\n', ['python3']],
    ['seccomp-agent', 'container demo-container (creating), metadata example\nseccompFd -> /dev/null\n', []],
    ['socket-activation', 'served by pid N on "web"\n', ['systemd-socket-activate']],
    [
      'seccomp-runc',
      'agent: refused mkdir /tmp/new\nagent: served /magic\ncontainer: mkdir refused\ncontainer: hello from the agent\n',
      ['runc', 'busybox-static', 'root'],
    ],
    [
      'pidfd',
      'peer pid is the one SO_PEERCRED reports\nits fd 7 reads: a line the worker keeps open on its fd 7\nthe worker exited\n',
      ['python3', 'root'],
    ],
    [
      'zero-downtime',
      'generation 1 listening\ngeneration 2 inherited the socket: true, same port: true\ngeneration 1 exited with 0\ngeneration 2 answers on the same port\n',
      [],
    ],
  ];
  for (const [name, expected, tools] of recipes) {
    it(`examples/${name}.mjs runs and prints what docs/recipes.md says`, needs(...tools), () => {
      const r = spawnSync(process.execPath, [join(repoRoot, 'examples', `${name}.mjs`)], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, expected);
    });
  }
});
