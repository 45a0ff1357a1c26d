// The API reference (TypeDoc, from the TSDoc comments) builds without a
// warning and explains every error code; the README's table lists them all.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes } from 'fdpass';
import { repoRoot, tempDir } from './helpers.js';

describe('docs', () => {
  it('npm run docs: TypeDoc builds, every ErrorCodes entry appears with its explanation', () => {
    const t = tempDir();
    try {
      const typedoc = join(repoRoot, 'node_modules', 'typedoc', 'bin', 'typedoc');
      const r = spawnSync(process.execPath, [typedoc, '--out', t.dir], { cwd: repoRoot, encoding: 'utf8', timeout: 180_000 });
      assert.equal(r.status, 0, `typedoc failed:\n${r.stdout}\n${r.stderr}`);
      const html = readFileSync(join(t.dir, 'variables', 'index.ErrorCodes.html'), 'utf8');
      const source = readFileSync(join(repoRoot, 'src', 'errors.ts'), 'utf8');
      for (const [key, code] of Object.entries(ErrorCodes)) {
        assert.ok(html.includes(code), `${code} is missing from the API reference`);
        const comment = new RegExp(`/\\*\\* ((?:(?!\\*/)[^])+?)\\s*\\*/\\s*${key}:`).exec(source);
        assert.ok(comment, `${key} has no doc comment in src/errors.ts`);
        const firstWords = comment[1]!
          .split(/\s+/)
          .slice(0, 3)
          .join(' ')
          .replace(/[<>&"]/g, '');
        assert.ok(html.replace(/<[^>]+>/g, '').includes(firstWords), `the explanation of ${code} is missing ("${firstWords}...")`);
      }
    } finally {
      t.cleanup();
    }
  });

  it("the README's error table lists every code", () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    for (const code of Object.values(ErrorCodes)) assert.match(readme, new RegExp(`^\\| \`${code}\` \\| .+ \\|$`, 'm'), code);
  });
});
