// Tests whose real peer or privilege may be missing: `needs('runc', 'root')`
// as the options of a test or describe skips it, with the reason and the
// apt-get line, when something is missing, and scripts/test.mjs ends the run
// with one summary of what was skipped. Under CI=true a missing tool is a
// failure, never a skip: CI has every tool, so a skip there hides a broken CI.
//
// Detection is instant (a PATH lookup, a uid, an ELF header), never a spawn
// that times out. Usage:
//
//   describe('with the real runc', needs('runc', 'busybox-static', 'root'), () => { ... });
//   test('a python3 peer', { ...needs('python3'), timeout: 30_000 }, async () => { ... });
//   test('inside', (t) => { if (!have(t, 'python3')) return; ... });
import { accessSync, appendFileSync, closeSync, constants, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test, type TestContext } from 'node:test';

/** What a test may need that a fresh machine (Node, a C compiler, make) may not have. */
export type Need =
  | 'python3'
  | 'python3-dbus'
  | 'runc'
  | 'runc-sid'
  | 'crun'
  | 'busybox-static'
  | 'systemd-socket-activate'
  | 'dbus-daemon'
  | 'setpriv'
  | 'prlimit'
  | 'clang-format'
  | 'mmdebstrap'
  | 'nsenter'
  | 'openssl'
  | 'binutils'
  | 'gcc-aarch64-linux-gnu'
  | 'libc6-arm64-cross'
  | 'musl-tools'
  | 'qemu-user'
  | 'wrk'
  | 'go-systemd'
  | 'python3-systemd'
  | 'gunicorn'
  | 'uwsgi'
  | 'ipv6'
  | 'xvfb'
  | 'bun'
  | 'deno'
  | 'root';

interface Tool {
  /** The Debian/Ubuntu package that provides it; none for privileges. */
  pkg?: string;
  /** Why it is missing, or null when present. */
  missing(): string | null;
}

/** Every executable file called `name` on PATH, in PATH order. */
export function whichAll(name: string): string[] {
  const out: string[] = [];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      out.push(p);
    } catch {
      // not here
    }
  }
  return out;
}

/** The file `name` resolves to on PATH, or null. */
export function which(name: string): string | null {
  return whichAll(name)[0] ?? null;
}

let dbusPython: string | null | undefined;

/**
 * The first python3 on PATH that can import dbus (python3-dbus is built for
 * the distribution's python3, which a pyenv or venv python3 may shadow).
 */
export function pythonWithDbus(): string | null {
  if (dbusPython === undefined) {
    dbusPython =
      whichAll('python3').find((p) => spawnSync(p, ['-c', 'import dbus'], { stdio: 'ignore', timeout: 10_000 }).status === 0) ?? null;
  }
  return dbusPython;
}

function onPath(name: string): () => string | null {
  return () => (which(name) === null ? `${name} not found on PATH` : null);
}

/** True when the ELF file at path has no program interpreter (statically linked). */
function isStatic(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const h = Buffer.alloc(64);
    readSync(fd, h, 0, 64, 0);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return false; // ELF64 little-endian only
    const phoff = Number(h.readBigUInt64LE(32));
    const phentsize = h.readUInt16LE(54);
    const phnum = h.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

const TOOLS: Record<Need, Tool> = {
  python3: { pkg: 'python3', missing: onPath('python3') },
  'python3-dbus': {
    pkg: 'python3-dbus',
    missing: () => {
      if (which('python3') === null) return 'python3 not found on PATH';
      return pythonWithDbus() === null ? 'no python3 on PATH can import dbus' : null;
    },
  },
  runc: { pkg: 'runc', missing: onPath('runc') },
  // runc >= 1.2 beside the system's 1.1 (test/protocols/runc/bundle.ts): Debian sid's,
  // fetched into the tools cache by scripts/tools.mjs with patchelf.
  'runc-sid': {
    pkg: 'patchelf',
    missing: () =>
      runcSidPath() === null ? 'not in the tools cache (FDPASS_RUNC_SID unset): node scripts/tools.mjs install runc-sid' : null,
  },
  crun: { pkg: 'crun', missing: onPath('crun') },
  'busybox-static': {
    pkg: 'busybox-static',
    missing: () => {
      const p = which('busybox');
      if (p === null) return 'busybox not found on PATH';
      return isStatic(p) ? null : `${p} is dynamically linked (a container's rootfs needs busybox-static)`;
    },
  },
  'systemd-socket-activate': { pkg: 'systemd', missing: onPath('systemd-socket-activate') },
  'dbus-daemon': { pkg: 'dbus-daemon', missing: onPath('dbus-daemon') },
  setpriv: { pkg: 'util-linux', missing: onPath('setpriv') },
  mmdebstrap: { pkg: 'mmdebstrap', missing: onPath('mmdebstrap') },
  // test/protocols/systemd/container.ts: nsenter, unshare and flock, all util-linux.
  nsenter: { pkg: 'util-linux', missing: () => ['nsenter', 'unshare', 'flock'].map((t) => onPath(t)()).find((m) => m !== null) ?? null },
  prlimit: { pkg: 'util-linux', missing: onPath('prlimit') },
  'clang-format': { pkg: 'clang-format', missing: onPath('clang-format') },
  openssl: { pkg: 'openssl', missing: onPath('openssl') },
  // The prebuilds (scripts/prebuild.mjs) and the arm64 Node under qemu.
  binutils: { pkg: 'binutils', missing: onPath('readelf') },
  'gcc-aarch64-linux-gnu': { pkg: 'gcc-aarch64-linux-gnu', missing: onPath('aarch64-linux-gnu-gcc') },
  'libc6-arm64-cross': {
    pkg: 'libc6-arm64-cross libstdc++6-arm64-cross',
    missing: () =>
      existsSync('/usr/aarch64-linux-gnu/lib/libstdc++.so.6') && existsSync('/usr/aarch64-linux-gnu/lib/libc.so.6')
        ? null
        : 'no arm64 libc and libstdc++ in /usr/aarch64-linux-gnu/lib',
  },
  'musl-tools': { pkg: 'musl-tools', missing: onPath('musl-gcc') },
  'qemu-user': { pkg: 'qemu-user', missing: onPath('qemu-aarch64') },
  wrk: { pkg: 'wrk', missing: onPath('wrk') },
  // The Go fixture of test/protocols/supervisor builds in GOPATH mode against Debian's copy.
  'go-systemd': {
    pkg: 'golang-go golang-github-coreos-go-systemd-dev',
    missing: () =>
      which('go') === null
        ? 'go not found on PATH'
        : existsSync('/usr/share/gocode/src/github.com/coreos/go-systemd/activation')
          ? null
          : 'no go-systemd in /usr/share/gocode',
  },
  // For Debian's /usr/bin/python3, which another python3 on PATH may shadow.
  'python3-systemd': {
    pkg: 'python3-systemd',
    missing: () => (existsSync('/usr/lib/python3/dist-packages/systemd/daemon.py') ? null : 'no systemd.daemon for /usr/bin/python3'),
  },
  gunicorn: { pkg: 'gunicorn', missing: onPath('gunicorn') },
  uwsgi: {
    pkg: 'uwsgi uwsgi-plugin-python3',
    missing: () =>
      which('uwsgi') === null
        ? 'uwsgi not found on PATH'
        : existsSync('/usr/lib/uwsgi/plugins/python3_plugin.so')
          ? null
          : 'no uwsgi python3 plugin',
  },
  // IPv6 on the loopback: ::1 configured (a kernel or container may have IPv6 off).
  ipv6: {
    missing: () => {
      let table = '';
      try {
        table = readFileSync('/proc/net/if_inet6', 'utf8');
      } catch {
        return 'no /proc/net/if_inet6: IPv6 is off in this kernel';
      }
      return /^0{31}1 /m.test(table) ? null : 'no ::1 on the loopback (IPv6 disabled: sysctl net.ipv6.conf.lo.disable_ipv6)';
    },
  },
  // test/protocols/shm/xvfb.test.ts: an X server with MIT-SHM.
  xvfb: { pkg: 'xvfb', missing: onPath('Xvfb') },
  // Bun and Deno from npm (the binaries inside the packages), as .ci/run installs them.
  bun: {
    missing: () =>
      runtimePath('bun') === null
        ? 'FDPASS_BUN not set, no bun on PATH: npm install --prefix /tmp/rt @oven/bun-linux-x64 && export FDPASS_BUN=/tmp/rt/node_modules/@oven/bun-linux-x64/bin/bun'
        : null,
  },
  deno: {
    missing: () =>
      runtimePath('deno') === null
        ? 'FDPASS_DENO not set, no deno on PATH: npm install --prefix /tmp/rt deno && export FDPASS_DENO=/tmp/rt/node_modules/@deno/linux-x64-glibc/deno'
        : null,
  },
  root: { missing: () => (process.getuid?.() === 0 ? null : `running as uid ${process.getuid?.()}, not root`) },
};

let runcSid: string | null | undefined;

/** Debian sid's runc, unpacked by `node scripts/tools.mjs install runc-sid` (FDPASS_RUNC_SID overrides), or null. */
export function runcSidPath(): string | null {
  if (runcSid === undefined) {
    const tools = process.env.FDPASS_TOOLS ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'fdpass', 'tools');
    const p = process.env.FDPASS_RUNC_SID || join(tools, 'debian-sid-runc', 'root', 'usr', 'sbin', 'runc');
    runcSid = existsSync(p) ? p : null;
  }
  return runcSid;
}

const cache = new Map<Need, string | null>();

/** Why `need` is missing, or null when it is there (cached per process). */
export function missing(need: Need): string | null {
  if (!cache.has(need)) cache.set(need, TOOLS[need].missing());
  return cache.get(need)!;
}

/** The apt-get line that installs the packages behind these needs (null when none is a package). */
export function aptLine(needs: readonly Need[]): string | null {
  const pkgs = [...new Set(needs.map((n) => TOOLS[n].pkg).filter((p): p is string => p !== undefined))];
  return pkgs.length === 0 ? null : `apt-get install -y ${pkgs.join(' ')}`;
}

/** Every package behind a Need: the README's apt-get line for the full suite names them all. */
export function allPackages(): string[] {
  return [...new Set(Object.values(TOOLS).flatMap((t) => (t.pkg === undefined ? [] : t.pkg.split(' '))))].sort();
}

/**
 * The one rule for "this is CI", the same in every runner (test/conformance/
 * harness.mjs, scripts/*.mjs; .ci/run sets CI=true): CI=true or CI=1.
 * test/guarantees/conventions.test.ts checks that no file reads CI another way.
 */
/** Bun's or Deno's binary: $FDPASS_BUN or $FDPASS_DENO, else the first on PATH; null when neither. */
export function runtimePath(name: 'bun' | 'deno'): string | null {
  const set = process.env[name === 'bun' ? 'FDPASS_BUN' : 'FDPASS_DENO'];
  return set !== undefined && set !== '' ? set : which(name);
}

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Record a skip for scripts/test.mjs's summary (it sets FDPASS_SKIP_LOG).
 * One JSON line per reason: the reason is how the summary joins it to the
 * skipped tests the reporter saw.
 */
function record(reason: string, absent: Need[]): void {
  const log = process.env.FDPASS_SKIP_LOG;
  if (log === undefined || log === '') return;
  const entry = { reason, needs: absent.map((n) => ({ need: n, pkg: TOOLS[n].pkg ?? null, why: missing(n) })) };
  appendFileSync(log, JSON.stringify(entry) + '\n');
}

/** The skip reason for these needs, or null when all are there. */
export function reasonFor(needs: readonly Need[]): string | null {
  const absent = [...new Set(needs)].filter((n) => missing(n) !== null);
  if (absent.length === 0) return null;
  const why = absent.map((n) => `${n} (${missing(n)})`).join(', ');
  const apt = aptLine(absent);
  const how = [apt, absent.includes('root') ? 'run as root' : null].filter((s) => s !== null).join('; ');
  return how === '' ? `needs ${why}` : `needs ${why}: ${how}`;
}

function absentOf(list: readonly Need[]): Need[] {
  return [...new Set(list)].filter((n) => missing(n) !== null);
}

function ciFailure(reason: string): Error {
  return new Error(`CI=true, so a missing tool fails instead of skipping: ${reason}`);
}

/**
 * Test options that skip the test or suite when a need is missing. Under
 * CI=true it still skips (so nothing waits on a missing peer) but registers
 * a failing test named after what is missing, so the run fails.
 */
export function needs(...list: Need[]): { skip?: string } {
  const reason = reasonFor(list);
  if (reason === null) return {};
  if (inCI) {
    test(`CI=true: missing ${absentOf(list).join(', ')}`, () => {
      throw ciFailure(reason);
    });
    const skip = `CI=true, FAILED: ${reason}`;
    record(skip, absentOf(list));
    return { skip };
  }
  record(reason, absentOf(list));
  return { skip: reason };
}

/**
 * Inside a running test: true when every need is there; otherwise skips the
 * test (t.skip) and returns false, or under CI=true throws.
 */
export function have(t: TestContext, ...list: Need[]): boolean {
  const reason = reasonFor(list);
  if (reason === null) return true;
  record(reason, absentOf(list));
  if (inCI) throw ciFailure(reason);
  t.skip(reason);
  return false;
}
