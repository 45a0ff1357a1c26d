// ESLint flat config: typescript-eslint's recommended rules on src/ and test/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** A layer's rule: in `files`, no relative import whose specifier matches `regex`. */
function layer(files, message, regex) {
  return [{ files: [files], rules: { 'no-restricted-imports': ['error', { patterns: [{ regex, message }] }] } }];
}

export default tseslint.config(
  { ignores: ['dist/', 'dist-cjs/', 'build/', 'build-test/', 'node_modules/', 'prebuilds/', 'docs/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setImmediate: 'readonly',
        queueMicrotask: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        URL: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  // The layers (ARCHITECTURE.md), lowest first: nothing imports upward;
  // protocols reach the layers below only through src/protocols/internal.ts
  // and never import each other; the CLI uses the package's public entry
  // points. test/docs/architecture.test.ts checks that no import circle remains.
  ...layer('src/base/**', 'base imports only base', '^\\.\\./'),
  ...layer('src/io/**', 'the io core imports only base and io', '^\\.\\./(transport|protocols|cli)/|^\\.\\./index\\.js$'),
  ...layer('src/transport/**', 'transports import only base, io and transports', '(^|/)(protocols|cli)/|^(\\.\\./)+index\\.js$'),
  ...layer('src/protocols/internal.ts', 'internal.ts opens the layers below to protocols, not protocols to each other', '^\\./|^\\.\\./(cli/|index\\.js$)'),
  ...layer(
    'src/protocols/*/**',
    'a protocol imports its own folder and ../internal.js (add what it needs there), never another protocol',
    '^\\.\\./(?!internal\\.js$)',
  ),
  ...layer(
    'src/cli/**',
    "the CLI uses the package's public entry points: ../index.js, ../protocols/<name>/index.js, ../transport/stream/index.js",
    '^\\.\\./(?!index\\.js$|(protocols/)?[\\w-]+/index\\.js$|transport/stream/index\\.js$)',
  ),
  {
    // packages/usocket-compat: a CommonJS shim, because dbus-next require()s usocket.
    files: ['packages/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', module: 'writable', __dirname: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // CommonJS config files read by other tools (PM2's ecosystem file).
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable' } },
  },
);
