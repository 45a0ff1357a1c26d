// Real containers for the tests: a busybox-static rootfs in a temp folder,
// config.json from `runc spec`, a private runc state root, unique ids.
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.js';

export type OciConfig = {
  process: { terminal: boolean; args: string[]; [k: string]: unknown };
  root: { path: string; readonly: boolean };
  linux: Record<string, unknown>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
};

const APPLETS = ['sh', 'echo', 'cat', 'sleep', 'mkdir', 'ls', 'true'];
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

export function makeRunc(): Runc {
  const tmp = tempDir('fdpass-runc-');
  const stateRoot = join(tmp.dir, 'state');
  const rootfs = join(tmp.dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  mkdirSync(join(rootfs, 'tmp'));
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', a));
  let bundles = 0;
  return {
    bundle(edit) {
      const dir = join(tmp.dir, `bundle${bundles++}`);
      mkdirSync(dir);
      const r = spawnSync('runc', ['spec'], { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`runc spec failed: ${r.stderr}`);
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as OciConfig;
      config.root = { path: rootfs, readonly: true };
      edit(config);
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 1));
      return dir;
    },
    id: () => `fdpass-test-${process.pid}-${counter++}`,
    run(args, cwd) {
      return new Promise((resolve, reject) => {
        execFile('runc', ['--root', stateRoot, ...args], { cwd, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
          if (err) reject(new Error(`runc ${args.join(' ')} failed: ${err.message}\n${stderr}`));
          else resolve({ stdout, stderr });
        });
      });
    },
    remove(id) {
      spawnSync('runc', ['--root', stateRoot, 'kill', id, 'KILL'], { timeout: 10_000 });
      spawnSync('runc', ['--root', stateRoot, 'delete', '-f', id], { timeout: 10_000 });
    },
    cleanup() {
      tmp.cleanup();
    },
  };
}
