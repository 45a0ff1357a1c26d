// The API reference (TypeDoc, from the TSDoc comments) builds without a
// warning and explains every error code; docs/errors.md's table lists them
// all. The README is a door a newcomer can find their way from: short, every
// entry point of the package with its guide, every relative link in the
// README, ARCHITECTURE.md and docs/ leading to a file and heading that exist.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { ErrorCodes } from 'fdpass';
import { repoRoot, tempDir } from '../helpers.js';

/** Every file under `path` (or `path` itself), but docs/api/, the generated reference. */
function listFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  if (path.endsWith(join('docs', 'api'))) return [];
  return readdirSync(path).flatMap((name) => listFiles(join(path, name)));
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as hyphens. */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  for (const [, heading] of markdown.replace(/^```[^]*?^```$/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    slugs.add(
      heading!
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return slugs;
}

describe('docs', () => {
  it('npm run docs: TypeDoc builds, every ErrorCodes entry appears with its explanation', () => {
    const t = tempDir();
    try {
      const typedoc = join(repoRoot, 'node_modules', 'typedoc', 'bin', 'typedoc');
      const r = spawnSync(process.execPath, [typedoc, '--out', t.dir], { cwd: repoRoot, encoding: 'utf8', timeout: 180_000 });
      assert.equal(r.status, 0, `typedoc failed:\n${r.stdout}\n${r.stderr}`);
      const html = readFileSync(join(t.dir, 'variables', 'index.ErrorCodes.html'), 'utf8');
      const source = readFileSync(join(repoRoot, 'src', 'base', 'errors.ts'), 'utf8');
      for (const [key, code] of Object.entries(ErrorCodes)) {
        assert.ok(html.includes(code), `${code} is missing from the API reference`);
        const comment = new RegExp(`/\\*\\* ((?:(?!\\*/)[^])+?)\\s*\\*/\\s*${key}:`).exec(source);
        assert.ok(comment, `${key} has no doc comment in src/base/errors.ts`);
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

  it("docs/errors.md's table lists every code", () => {
    const errors = readFileSync(join(repoRoot, 'docs', 'errors.md'), 'utf8');
    for (const code of Object.values(ErrorCodes)) assert.match(errors, new RegExp(`^\\| \`${code}\` \\| .+ \\|$`, 'm'), code);
  });

  it('the README is at most 300 lines and links a guide for every entry point of the package', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const lines = readme.split('\n').length - 1;
    assert.ok(lines <= 300, `README.md has ${lines} lines`);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    for (const entry of Object.keys(pkg.exports).filter((e) => e !== './package.json')) {
      const name = entry === '.' ? 'fdpass' : `fdpass/${entry.slice(2)}`;
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
      assert.ok(row, `no row for ${name} in the README's module table`);
      const guide = /\]\((docs\/[\w-]+\.md)\) \|$/.exec(row);
      assert.ok(guide && existsSync(join(repoRoot, guide[1]!)), `${name}'s row links no guide that exists: ${row}`);
    }
  });

  it('code and docs cite nothing outside the repository', () => {
    const outside = /FACTS\.md|\.\.\/shared\//;
    const files = ['README.md', 'ARCHITECTURE.md', 'docs', 'src', 'native', 'test', 'bench', 'scripts', 'examples'].flatMap((p) =>
      listFiles(join(repoRoot, p)),
    );
    const citing = files.filter((f) => !f.endsWith('docs.test.ts') && outside.test(readFileSync(f, 'utf8')));
    assert.deepEqual(citing, []);
  });

  it('every relative link in the README, ARCHITECTURE.md and docs/ leads to a file and heading that exist', () => {
    const docs = [
      'README.md',
      'ARCHITECTURE.md',
      ...readdirSync(join(repoRoot, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ];
    const broken: string[] = [];
    for (const doc of docs) {
      const text = readFileSync(join(repoRoot, doc), 'utf8').replace(/^```[^]*?^```$/gm, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
        const [path, anchor] = target!.split('#') as [string, string | undefined];
        const file = path === '' ? doc : normalize(join(dirname(doc), path));
        if (!existsSync(join(repoRoot, file))) {
          broken.push(`${doc}: ${target} (no ${file})`);
          continue;
        }
        if (anchor !== undefined && file.endsWith('.md') && !headingSlugs(readFileSync(join(repoRoot, file), 'utf8')).has(anchor)) {
          broken.push(`${doc}: ${target} (no heading #${anchor} in ${file})`);
        }
      }
    }
    assert.deepEqual(broken, []);
  });
});
