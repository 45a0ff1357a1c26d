// Real containers for the tests: a busybox-static rootfs in a temp folder,
// config.json from `runc spec`, a private runc state root, unique ids.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers.js';
import { which } from '../../tools.js';

export type OciConfig = {
  process: { terminal: boolean; args: string[]; [k: string]: unknown };
  root: { path: string; readonly: boolean };
  linux: Record<string, unknown>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
};

const APPLETS = ['sh', 'echo', 'cat', 'sleep', 'mkdir', 'ls', 'true', 'stty'];
let counter = 0;

export interface Runc {
  /** A bundle with `edit` applied to runc's default config; returns its path. */
  bundle(edit: (config: OciConfig) => void): string;
  /** A container id nobody else uses. */
  id(): string;
  /** Run runc with our state root; resolves with its output, rejects on failure. */
  run(args: string[], cwd?: string): Promise<{ stdout: string; stderr: string }>;
  /** Kill and delete a container, whatever state it is in. */
  remove(id: string): void;
  cleanup(): void;
}

/**
 * Nothing is created until the first bundle, so that a test file whose runc
 * tests are skipped (no runc, busybox-static or root) loads without them.
 */
export function makeRunc(): Runc {
  let tmp: ReturnType<typeof tempDir> | null = null;
  const stateRoot = (): string => join(setup().dir, 'state');
  const rootfs = (): string => join(setup().dir, 'rootfs');
  function setup(): ReturnType<typeof tempDir> {
    if (tmp !== null) return tmp;
    const busybox = which('busybox');
    if (busybox === null) throw new Error('busybox not found on PATH (apt-get install busybox-static)');
    tmp = tempDir('fdpass-runc-');
    const root = join(tmp.dir, 'rootfs');
    mkdirSync(join(root, 'bin'), { recursive: true });
    mkdirSync(join(root, 'tmp'));
    copyFileSync(busybox, join(root, 'bin', 'busybox'));
    for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
    return tmp;
  }
  let bundles = 0;
  return {
    bundle(edit) {
      const dir = join(setup().dir, `bundle${bundles++}`);
      mkdirSync(dir);
      const r = spawnSync('runc', ['spec'], { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`runc spec failed: ${r.stderr}`);
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as OciConfig;
      config.root = { path: rootfs(), readonly: true };
      edit(config);
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 1));
      return dir;
    },
    id: () => `fdpass-test-${process.pid}-${counter++}`,
    run(args, cwd) {
      // Resolve on exit, not on close: a detached container without a
      // terminal inherits runc's stdio and may hold it open for long.
      return new Promise((resolve, reject) => {
        const p = spawn('runc', ['--root', stateRoot(), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d));
        p.stderr.on('data', (d: Buffer) => (stderr += d));
        const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
        p.on('error', reject);
        p.on('exit', (code, signal) => {
          clearTimeout(timer);
          p.stdout.destroy();
          p.stderr.destroy();
          if (code === 0) resolve({ stdout, stderr });
          else reject(new Error(`runc ${args.join(' ')} failed (${code ?? signal}): ${stderr}`));
        });
      });
    },
    remove(id) {
      if (tmp === null) return;
      spawnSync('runc', ['--root', stateRoot(), 'kill', id, 'KILL'], { timeout: 10_000 });
      spawnSync('runc', ['--root', stateRoot(), 'delete', '-f', id], { timeout: 10_000 });
    },
    cleanup() {
      tmp?.cleanup();
      tmp = null;
    },
  };
}
