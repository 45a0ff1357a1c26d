// The loader's choice of prebuild: the C library is told from the ELF
// interpreter of the running executable (checked against real glibc and
// musl executables), and a missing addon is a coded error, not a crash.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectLibc, elfInterpreter, prebuildName } from '../../src/base/platform.js';
import { repoRoot, tempDir } from '../helpers.js';
import { have } from '../tools.js';
import { muslEnv } from '../package/platforms.js';

describe('platform detection', () => {
  it('this Node runs on glibc, as its process report says', () => {
    assert.match(elfInterpreter(process.execPath) ?? '', /^\/lib.*\/ld-linux-x86-64\.so\.2$/);
    const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
    assert.equal(typeof header.glibcVersionRuntime, 'string');
    assert.equal(detectLibc(), 'glibc');
    assert.equal(prebuildName(), `linux-${process.arch}`);
  });

  it('a musl executable, a static one and a text file', (t) => {
    if (!have(t, 'musl-tools')) return;
    const tmp = tempDir('fdpass-libc-');
    try {
      writeFileSync(tmp.path('hello.c'), 'int main(void) { return 0; }\n');
      for (const [out, extra] of [
        ['dynamic', []],
        ['static', ['-static']],
      ] as const) {
        const r = spawnSync('musl-gcc', [...extra, '-o', tmp.path(out), tmp.path('hello.c')], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
      }
      assert.equal(spawnSync(tmp.path('dynamic'), { env: muslEnv() }).status, 0, 'the musl executable runs');
      assert.match(elfInterpreter(tmp.path('dynamic')) ?? '', /^\/lib\/ld-musl-x86_64\.so\.1$/);
      assert.equal(detectLibc(tmp.path('dynamic')), 'musl');
      assert.equal(prebuildName('musl'), `linux-${process.arch}-musl`);
      // No interpreter: the process report decides (this process: glibc).
      assert.equal(elfInterpreter(tmp.path('static')), null);
      assert.equal(detectLibc(tmp.path('static')), 'glibc');
      assert.equal(elfInterpreter(tmp.path('hello.c')), null);
      assert.equal(elfInterpreter(tmp.path('nothing here')), null);
    } finally {
      tmp.cleanup();
    }
  });

  it('no addon that loads: ERR_FDPASS_NO_ADDON with what was tried, from ESM and CommonJS', () => {
    for (const [flag, code] of [
      ['--input-type=module', "import('fdpass').catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })))"],
      [
        '--input-type=commonjs',
        "try { require('fdpass') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }",
      ],
    ]) {
      // A file that exists but is no addon: it fails to load, and the error says why.
      const bad = join(repoRoot, 'README.md');
      const r = spawnSync(process.execPath, [flag, '-e', code!], {
        cwd: repoRoot,
        env: { ...process.env, FDPASS_NATIVE: bad },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      const out = JSON.parse(r.stdout) as { code: string; message: string };
      assert.equal(out.code, 'ERR_FDPASS_NO_ADDON');
      assert.ok(out.message.includes(`no native addon loads on linux-${process.arch}`), out.message);
      assert.ok(out.message.includes(bad), out.message);
      assert.ok(out.message.includes('npm rebuild fdpass'), out.message);
    }
  });
});
