// Real containers for the tests: a busybox-static rootfs in a temp folder,
// config.json from the runtime's own `spec`, a private state root, unique
// ids. Three OCI runtimes speak the same sockets:
// - runc from the system (Debian 12: 1.1.5);
// - runc from Debian sid (1.3.6 when written), unpacked with sid's libc6 into
//   the tools cache by `node scripts/tools.mjs install runc-sid`
//   (FDPASS_RUNC_SID overrides);
// - crun (Debian 12: 1.8.1). It refuses this machine's hybrid cgroup
//   hierarchy, so each call runs in a mount namespace of its own with
//   cgroup2 mounted on /sys/fs/cgroup, and creates no cgroup
//   (--cgroup-manager=disabled). The container's state lives in --root as
//   for runc, so create, start, kill and delete need no shared namespace.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers.js';
import { runcSidPath, which, type Need } from '../../tools.js';

/** An OCI runtime the tests drive. */
export interface OciRuntime {
  /** 'runc 1.1.5', 'crun 1.8.1' (the version when the runtime is here). */
  readonly name: string;
  readonly kind: 'runc' | 'crun';
  /** What the tests with it need. */
  readonly needs: Need[];
  /** The command and the global options that go before --root. */
  argv(): string[];
}

function versioned(name: string, argv: string[] | null): string {
  if (argv === null) return name;
  const r = spawnSync(argv[0]!, [...argv.slice(1), '--version'], { encoding: 'utf8', timeout: 10_000 });
  const v = /version (\S+)/.exec(r.stdout ?? '')?.[1];
  return v === undefined ? name : `${name} ${v}`;
}

const crunArgv = [
  ...['unshare', '--mount', '--propagation', 'private'],
  ...['sh', '-c', 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', 'sh'],
  ...['crun', '--cgroup-manager=disabled'],
];

export const RUNC: OciRuntime = {
  name: versioned('runc', which('runc') ? ['runc'] : null),
  kind: 'runc',
  needs: ['runc', 'busybox-static', 'root'],
  argv: () => ['runc'],
};

export const RUNC_SID: OciRuntime = {
  name: versioned('runc (Debian sid)', runcSidPath() ? [runcSidPath()!] : null),
  kind: 'runc',
  needs: ['runc-sid', 'busybox-static', 'root'],
  argv: () => [runcSidPath()!],
};

export const CRUN: OciRuntime = {
  name: versioned('crun', which('crun') ? ['crun'] : null),
  kind: 'crun',
  needs: ['crun', 'nsenter', 'busybox-static', 'root'],
  argv: () => crunArgv,
};

/** Every OCI runtime of the suite. */
export const OCI_RUNTIMES: readonly OciRuntime[] = [RUNC, RUNC_SID, CRUN];

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
export function makeRunc(runtime: OciRuntime = RUNC): Runc {
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
      const [cmd, ...pre] = runtime.argv();
      const r = spawnSync(cmd!, [...pre, 'spec'], { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${runtime.name} spec failed: ${r.stderr}`);
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
        const [cmd, ...pre] = runtime.argv();
        const p = spawn(cmd!, [...pre, '--root', stateRoot(), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
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
          else reject(new Error(`${runtime.name} ${args.join(' ')} failed (${code ?? signal}): ${stderr}`));
        });
      });
    },
    remove(id) {
      if (tmp === null) return;
      const [cmd, ...pre] = runtime.argv();
      spawnSync(cmd!, [...pre, '--root', stateRoot(), 'kill', id, 'KILL'], { timeout: 10_000 });
      spawnSync(cmd!, [...pre, '--root', stateRoot(), 'delete', '-f', id], { timeout: 10_000 });
    },
    cleanup() {
      tmp?.cleanup();
      tmp = null;
    },
  };
}
