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

// The dynamic loaders of glibc and musl on the architectures fdpass ships.
const loaders: Record<string, { glibc: RegExp; musl: RegExp }> = {
  x64: { glibc: /^\/lib.*\/ld-linux-x86-64\.so\.2$/, musl: /^\/lib\/ld-musl-x86_64\.so\.1$/ },
  arm64: { glibc: /^\/lib.*\/ld-linux-aarch64\.so\.1$/, musl: /^\/lib\/ld-musl-aarch64\.so\.1$/ },
};
const loader = loaders[process.arch];
const unknownArch = loader ? {} : { skip: `no loader names known for ${process.arch} (fdpass ships x64 and arm64)` };

describe('platform detection', () => {
  it("this Node's C library, as its process report says, told from its ELF interpreter", unknownArch, () => {
    const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
    const libc = typeof header.glibcVersionRuntime === 'string' ? 'glibc' : 'musl';
    assert.match(elfInterpreter(process.execPath) ?? '', loader![libc]);
    assert.equal(detectLibc(), libc);
    assert.equal(prebuildName(), libc === 'glibc' ? `linux-${process.arch}` : `linux-${process.arch}-musl`);
  });

  it('a musl executable, a static one and a text file', unknownArch, (t) => {
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
      assert.match(elfInterpreter(tmp.path('dynamic')) ?? '', loader!.musl);
      assert.equal(detectLibc(tmp.path('dynamic')), 'musl');
      assert.equal(prebuildName('musl'), `linux-${process.arch}-musl`);
      // No interpreter: the process report decides (this process's C library).
      const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
      assert.equal(elfInterpreter(tmp.path('static')), null);
      assert.equal(detectLibc(tmp.path('static')), typeof header.glibcVersionRuntime === 'string' ? 'glibc' : 'musl');
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
