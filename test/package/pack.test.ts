// The npm tarball as users get it: `npm pack`, installed with scripts off into
// an empty project (no compiler involved), then used from ESM, CommonJS and a
// strict TypeScript project.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { repoRoot, tempDir } from '../helpers.js';
import { have, inCI, type Need } from '../tools.js';
import { ensureTool, linkCheck, muslDlopen, toolPath } from './platforms.js';
import { consumerEnv, installInto, ok, pack, run } from './tarball.js';

const tscBin = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');

// A round trip: a file's fd goes through a socketpair and is read on the other side.
const roundTrip = (load: string) => `
${load}
const { FdSocket, MAX_FDS } = fdpass;
const fs = require_('node:fs');
const [a, b] = FdSocket.pair();
const fd = fs.openSync(process.argv[2], 'r');
a.sendFd('the-file', fd).then(async () => {
  fs.closeSync(fd);
  const got = await b.recvFd();
  const text = fs.readFileSync(got.fd, 'utf8');
  fs.closeSync(got.fd);
  await a.close(); await b.close();
  const addon = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith('fdpass.node'));
  console.log(JSON.stringify({ name: got.name, text, maxFds: MAX_FDS, addon: addon && addon.slice(addon.indexOf('/')) }));
});
`;

const muslScript = `import { FdSocket, MAX_FDS, closeFds } from 'fdpass';
import { openSync, closeSync, readFileSync, readlinkSync } from 'node:fs';
const fd = openSync(process.argv[2], 'r');
const fds = new Array(MAX_FDS).fill(fd);
const targets = new Set();
const take = (m) => {
  for (const f of m.fds) targets.add(readlinkSync('/proc/self/fd/' + f));
  closeFds(m.fds);
  return m.fds.length;
};
const [a, b] = FdSocket.pair();
await a.send('many', fds);
const one = take(await b.recv({ maxFds: MAX_FDS }));
const [c, d] = FdSocket.pair('seqpacket');
const sent = Promise.all(Array.from({ length: 8 }, (_, i) => c.send('batch ' + i, fds)));
const failed = sent.then(() => new Promise(() => {}));
const batch = [];
for (let i = 0; i < 8; i++) batch.push(take(await Promise.race([d.recv({ maxFds: MAX_FDS }), failed])));
await sent;
closeSync(fd);
for (const s of [a, b, c, d]) await s.close();
const addon = readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith('fdpass.node'));
console.log(JSON.stringify({ arch: process.arch, fds: one, batch, targets: [...targets], addon: addon && addon.slice(addon.indexOf('/')) }));
`;

describe('npm pack', () => {
  const tmp = tempDir('fdpass-pack-');
  const project = tmp.path('consumer');
  let tarball = '';
  let files: string[] = [];

  // Under CI every prebuild is required (prepack runs with --strict there),
  // so Zig's cc for linux-arm64-musl is brought first (npm, cached); outside
  // CI it is used if installed.
  const zig = inCI ? ensureTool('zig').path : toolPath('zig');

  before(() => {
    ({ tarball, files } = pack(tmp.dir));
    installInto(project, tarball);
    writeFileSync(join(project, 'data.txt'), 'hello through SCM_RIGHTS\n');
  });
  after(() => tmp.cleanup());

  it('contains only what users need', () => {
    const allowed = [
      /^dist\/.*\.(js|d\.ts)$/,
      /^dist-cjs\/.*\.(js|d\.ts)$/,
      /^dist-cjs\/package\.json$/,
      /^native\/[^/]+\.[ch]$/,
      /^packages\/usocket-compat\/(index\.js|package\.json|README\.md)$/,
    ];
    const exact = ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'scripts/build-native.mjs', 'scripts/install.mjs'];
    const prebuilds = /^prebuilds\/linux-(x64|arm64)(-musl)?\/fdpass\.node$/;
    for (const f of files) {
      assert.ok(exact.includes(f) || allowed.some((re) => re.test(f)) || prebuilds.test(f), `unexpected file in the tarball: ${f}`);
    }
    for (const f of [
      ...exact,
      'prebuilds/linux-x64/fdpass.node',
      'dist/index.js',
      'dist/index.d.ts',
      'dist-cjs/index.js',
      'native/fdpass.c',
    ]) {
      assert.ok(files.includes(f), `missing from the tarball: ${f}`);
    }
  });

  it('installs with scripts off and compiles nothing', () => {
    const pkgDir = join(project, 'node_modules', 'fdpass');
    assert.ok(existsSync(join(pkgDir, 'prebuilds', 'linux-x64', 'fdpass.node')));
    assert.ok(!existsSync(join(pkgDir, 'build')), 'nothing was compiled');
    // The install script, with no compiler reachable: it uses the prebuild.
    const env = { ...consumerEnv, PATH: dirname(process.execPath) };
    ok(run(process.execPath, [join(pkgDir, 'scripts', 'install.mjs')], pkgDir, env), 'the install script');
    assert.ok(!existsSync(join(pkgDir, 'build')), 'the install script compiled although a prebuild matches');
  });

  for (const [kind, file, load] of [
    [
      'ESM (import)',
      'esm.mjs',
      "import * as fdpass from 'fdpass';\nimport { createRequire } from 'node:module';\nconst require_ = createRequire(import.meta.url);",
    ],
    [
      'CommonJS (require)',
      'cjs.cjs',
      "const fdpass = require('fdpass');\nconst require_ = require;\nfor (const sub of ['fdpass/runc', 'fdpass/systemd', 'fdpass/handoff', 'fdpass/pidfd', 'fdpass/seccomp', 'fdpass/cluster', 'fdpass/shm']) require(sub);",
    ],
  ] as const) {
    it(`runs a round trip from ${kind} with the prebuilt addon`, () => {
      writeFileSync(join(project, file), roundTrip(load));
      const out = JSON.parse(ok(run(process.execPath, [file, 'data.txt'], project), file)) as Record<string, unknown>;
      assert.deepEqual(out, {
        name: 'the-file',
        text: 'hello through SCM_RIGHTS\n',
        maxFds: 253,
        addon: join(project, 'node_modules', 'fdpass', 'prebuilds', 'linux-x64', 'fdpass.node'),
      });
    });
  }

  // What a user on musl gets: Bun's musl build (scripts/tools.mjs bun-musl;
  // arm64: bun-musl-arm64 under qemu-aarch64 with Debian's arm64 musl) picks
  // prebuilds/linux-*-musl by its own ELF interpreter and sends MAX_FDS fds
  // in one message, then 8 such messages back to back (musl <= 1.2.3's
  // sendmsg refused them, ENOMEM). The script spawns no child: under qemu
  // a child of the emulated runtime could not exec (no binfmt_misc here).
  for (const [arch, tool, needs] of [
    ['x64', 'bun-musl', ['musl-tools']],
    ['arm64', 'bun-musl-arm64', ['qemu-user', 'libc6-arm64-cross']],
  ] as const) {
    it(`runs under Bun's ${arch} musl build with the linux-${arch}-musl prebuild: ${253} fds in one message, then a batch`, (t) => {
      if (!have(t, ...needs)) return;
      const bun = (arch === 'x64' ? process.env.FDPASS_BUN_MUSL : undefined) || toolPath(tool);
      const install = `apt-get install -y musl musl-tools qemu-user libstdc++6-arm64-cross && node scripts/tools.mjs install ${tool}`;
      if (!bun) {
        if (inCI) assert.fail(`CI=true and Bun's ${arch} musl build is missing: ${install}`);
        return t.skip(`Bun's ${arch} musl build is missing: ${install}`);
      }
      if (arch === 'arm64' && !zig) return t.skip(`Zig's cc is not installed: node scripts/tools.mjs install zig`);
      assert.ok(
        files.includes(`prebuilds/linux-${arch}-musl/fdpass.node`),
        `prebuilds/linux-${arch}-musl/fdpass.node is not in the tarball`,
      );
      writeFileSync(join(project, 'musl.mjs'), muslScript);
      const env = { ...consumerEnv };
      delete env.LD_PRELOAD; // glibc's ASan runtime (npm run test:asan) cannot load under musl
      const [cmd, ...pre] = arch === 'x64' ? [bun] : ['qemu-aarch64', '-L', join(dirname(bun), 'musl-root'), bun];
      const out = JSON.parse(
        ok(run(cmd!, [...pre, 'musl.mjs', 'data.txt'], project, env), `musl.mjs under Bun's ${arch} musl build`),
      ) as Record<string, unknown>;
      assert.deepEqual(out, {
        arch,
        fds: 253,
        batch: Array.from({ length: 8 }, () => 253),
        targets: [join(project, 'data.txt')],
        addon: join(project, 'node_modules', 'fdpass', 'prebuilds', `linux-${arch}-musl`, 'fdpass.node'),
      });
    });
  }

  describe('each prebuild links only against its C library and Node', () => {
    for (const [name, libc, machine, toolchain] of [
      ['linux-x64', 'glibc', 'X86-64', null],
      ['linux-arm64', 'glibc', 'AArch64', 'gcc-aarch64-linux-gnu'],
      ['linux-x64-musl', 'musl', 'X86-64', 'musl-tools'],
      ['linux-arm64-musl', 'musl', 'AArch64', 'zig'],
    ] as const) {
      it(name, (t) => {
        // The toolchain that builds it, and the C library it is checked against.
        const system: Need[] = ['binutils'];
        if (toolchain !== null && toolchain !== 'zig') system.push(toolchain);
        if (name === 'linux-arm64') system.push('libc6-arm64-cross');
        if (libc === 'musl') system.push('musl-tools');
        if (!have(t, ...system)) return;
        if (toolchain === 'zig' && !zig) return t.skip(`Zig's cc is not installed: node scripts/tools.mjs install zig`);
        assert.ok(files.includes(`prebuilds/${name}/fdpass.node`), `prebuilds/${name}/fdpass.node is not in the tarball`);
        const r = linkCheck(join(project, 'node_modules', 'fdpass', 'prebuilds', name, 'fdpass.node'));
        assert.equal(r.machine, machine);
        assert.deepEqual(r.unknown, [], `symbols that are neither the C library's nor Node's`);
        if (libc === 'musl') {
          assert.deepEqual(r.needed, ['libc.so']);
          assert.deepEqual(r.versions, [], 'a musl build needs no symbol versions (GLIBC_*)');
          if (machine === 'X86-64') {
            // musl's own loader accepts it: every libc symbol resolves in musl.
            const loaded = muslDlopen(join(project, 'node_modules', 'fdpass', 'prebuilds', name, 'fdpass.node'), tmp.dir);
            assert.deepEqual(loaded, { status: 0, output: 'napi_register_module_v1 found' });
          }
        } else {
          assert.deepEqual(r.needed, ['libc.so.6']);
          // Debian 10, Ubuntu 18.10, RHEL 8 and later.
          const newest = r.versions
            .map((v) => v.replace('GLIBC_', '').split('.').map(Number))
            .sort((x, y) => y[0]! - x[0]! || y[1]! - x[1]!)[0]!;
          assert.ok(newest[0] === 2 && newest[1]! <= 28, `needs GLIBC_${newest.join('.')}, more than glibc 2.28`);
        }
      });
    }
  });

  describe('a strict TypeScript consumer', () => {
    const tsconfig = (files: string[]) =>
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022', 'ESNext.Disposable'],
          types: ['node'],
          noEmit: true,
          skipLibCheck: false,
        },
        files,
      });
    const tsc = (...files: string[]) => {
      writeFileSync(join(project, `tsconfig.${files[0]}.json`), tsconfig(files));
      return run(process.execPath, [tscBin, '-p', `tsconfig.${files[0]}.json`], project);
    };

    it('type-checks ESM and CommonJS code that names our types', () => {
      writeFileSync(
        join(project, 'good.mts'),
        `import { FdSocket, FdServer, FdPassError, ErrorCodes, type FdLike, type PeerCredentials, type ReceivedMessage } from 'fdpass';
import type { ContainerProcessState, ContainerState } from 'fdpass/runc';
import { listenFds } from 'fdpass/systemd';
import { Handoff } from 'fdpass/handoff';
import { SharedMemory, type Seal } from 'fdpass/shm';
export function shared(): number {
  const seals: Seal[] = ['shrink', 'grow'];
  using shm = SharedMemory.create(16, { seals });
  const bytes: ArrayBuffer = shm.buffer;
  return bytes.byteLength + shm.fd;
}
export async function main(path: string): Promise<void> {
  await using server = await FdServer.listen({ path, allow: (p: PeerCredentials) => p.uid === process.getuid!() });
  const sock: FdSocket = await FdSocket.connect(path);
  const what: FdLike = 0;
  await sock.send('x', [what]);
  const m: ReceivedMessage | null = await sock.recv({ signal: AbortSignal.timeout(1000) });
  const fds: number[] = m?.fds ?? [];
  const state = null as ContainerProcessState | null;
  const inner: ContainerState | undefined = state?.state;
  const code: string = ErrorCodes.EOF;
  console.log(fds, inner?.id, code, listenFds().length, typeof Handoff.start, new FdPassError(code, 'x') instanceof Error, server.path);
}
`,
      );
      writeFileSync(
        join(project, 'good.cts'),
        `import fdpass = require('fdpass');
import runc = require('fdpass/runc');
import shm = require('fdpass/shm');
export const fromFd: (fd: number, options?: shm.SharedMemoryFromFdOptions) => shm.SharedMemory = shm.SharedMemory.fromFd;
const [a, b]: [fdpass.FdSocket, fdpass.FdSocket] = fdpass.FdSocket.pair('seqpacket');
export const p: Promise<void> = a.sendFd('name', b).then(() => b.close());
export const s: typeof runc.sendConsole = runc.sendConsole;
`,
      );
      // One tsc for both (each start of tsc costs seconds).
      ok(tsc('good.mts', 'good.cts'), 'tsc on good.mts and good.cts');
    });

    // What the code forbids, the published types forbid: each line marked as
    // an expected error must fail to type-check against the tarball's .d.ts
    // (ESM and CommonJS builds), or tsc reports the directive as unused.
    it('rejects what the code forbids: constructors that are private, members that are not public', () => {
      writeFileSync(
        join(project, 'forbidden.mts'),
        `import { FdSocket, FdServer, FdPassError } from 'fdpass';
import { RuncListener, PtyStream } from 'fdpass/runc';
import { StoredListeners, Watchdog } from 'fdpass/systemd';
import { Handoff } from 'fdpass/handoff';
import { Supervisor } from 'fdpass/supervisor';
import { SharedMemory } from 'fdpass/shm';
import { Pidfd } from 'fdpass/pidfd';
import { ClusterPrimary } from 'fdpass/cluster';
import { SeccompNotifier } from 'fdpass/seccomp';
import { FdStream } from 'fdpass/stream';

// @ts-expect-error FdSocket.connect, pair, fromFd, bindDatagram or FdServer make them
new FdSocket(7, 1);
// @ts-expect-error nor through a subclass
export class Mine extends FdSocket {}
// @ts-expect-error FdServer.listen or FdServer.fromFd
new FdServer(7, 1, {});
// @ts-expect-error listenConsoleSocket, listenSeccompAgent, listenPidfdSocket
new RuncListener<number>();
// @ts-expect-error listenStored
new StoredListeners();
// @ts-expect-error Handoff.start
new Handoff();
// @ts-expect-error Pidfd.open or Pidfd.fromFd
new Pidfd(7, 1);
// @ts-expect-error ClusterPrimary.start
new ClusterPrimary();
// @ts-expect-error watchdog()
new Watchdog();
// @ts-expect-error Supervisor.start
new Supervisor();
// @ts-expect-error SharedMemory.create or SharedMemory.fromFd
new SharedMemory();

export function misuse(service: StoredListeners, sock: FdSocket): void {
  // @ts-expect-error listenStored's own step
  service.handleSigterm();
  // @ts-expect-error read-only
  sock.type = 'dgram';
}

// What users may construct.
export const allowed = [
  new FdPassError('ERR_FDPASS_EOF', 'x'),
  (fd: number) => new SeccompNotifier(fd),
  (fd: number) => new PtyStream(fd),
  (fd: number) => new FdStream({ fd }),
];
`,
      );
      writeFileSync(
        join(project, 'forbidden.cts'),
        `import fdpass = require('fdpass');
import runc = require('fdpass/runc');
import systemd = require('fdpass/systemd');
// @ts-expect-error private constructor
new fdpass.FdSocket(7, 1);
// @ts-expect-error private constructor
new runc.RuncListener<number>();
// @ts-expect-error private constructor
new systemd.StoredListeners();
// @ts-expect-error the package exports no internals
import internal = require('fdpass/dist/protocols/internal.js');
export const x = internal;
`,
      );
      ok(tsc('forbidden.mts', 'forbidden.cts'), 'tsc on forbidden.mts and forbidden.cts');
    });

    it('rejects an fd where a name goes', () => {
      writeFileSync(
        join(project, 'bad.mts'),
        `import { FdSocket } from 'fdpass';
const [a] = FdSocket.pair();
await a.sendFd(3, 'name');
`,
      );
      const r = tsc('bad.mts');
      assert.notEqual(r.status, 0, 'tsc accepted sendFd(fd, name)');
      assert.match(r.stdout, /bad\.mts\(3,16\): error TS2345: Argument of type 'number' is not assignable to parameter of type 'string'/);
    });
  });
});
