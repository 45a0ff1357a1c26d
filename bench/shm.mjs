// fdpass/shm's rows of `npm run bench`: hand a 64 MiB buffer to another
// process, which reads its last byte and answers with it; the time from the
// sender's write of that byte to the answer, per handoff. Contenders:
// fdpass/shm (the fd of a sealed memfd over an FdSocket, the receiver maps it
// with SharedMemory.fromFd and closes it; or remaps each into one buffer), child_process.send with json (the
// bytes as a base64 string) and advanced serialization (the Buffer), a pipe
// (the child's stdin), an AF_UNIX socket write (net), and the limit: a C
// program doing what fdpass/shm does (bench/c/shmbench.c). fdpass/shm and C
// also at 32 MiB: V8 (Node, Deno) counts an ArrayBuffer's bytes as external
// memory and starts a garbage collection whenever 64 MiB or more were added
// since the last one, so each fresh 64 MiB mapping costs one. Contenders
// alternate within each round; each figure is the median of the round's
// handoffs, each ratio the median of per-round ratios. Nothing asserts speed.
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdSocket } from 'fdpass';
import { SharedMemory } from 'fdpass/shm';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const peer = join(here, 'peers', 'shm-peer.mjs');
const SIZE = 64 << 20;

function buildC() {
  const src = join(here, 'c', 'shmbench.c');
  const out = join(root, 'build', 'bench', 'shmbench');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(dirname(out), { recursive: true });
    execFileSync('cc', ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, src], { stdio: 'inherit' });
  }
  return out;
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const exited = (child) => new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));

/** Times n handoffs: send(i) hands the buffer over with last byte i & 255 and resolves with the answer. */
async function time(n, buf, send) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    buf[buf.length - 1] = i & 255;
    const back = await send(i);
    t.push(Number(process.hrtime.bigint() - start) / 1e9);
    if (back !== (i & 255)) throw new Error(`answer ${back}, expected ${i & 255}`);
  }
  return median(t);
}

/** Resolves with the next byte a stream brings. */
const nextByte = (stream) => new Promise((res) => stream.once('data', (d) => res(d[d.length - 1])));

async function shm(n, size, mode = 'shm') {
  {
    const shm = SharedMemory.create(size, { name: 'bench', seals: ['shrink', 'grow'] });
    const buf = new Uint8Array(shm.buffer);
    buf.fill(1);
    const [ours, theirs] = FdSocket.pair();
    const child = spawn(process.execPath, [peer, mode], { stdio: ['ignore', 'inherit', 'inherit', theirs.fd] });
    await theirs.close();
    try {
      return await time(n, buf, async () => {
        await ours.sendFd('b', shm.fd);
        return (await ours.recv()).data[0];
      });
    } finally {
      await ours.close();
      await exited(child);
      shm.close();
    }
  }
}

const contenders = {
  shm: (n) => shm(n, SIZE),
  shm32: (n) => shm(n, SIZE / 2),
  shmRemap: (n) => shm(n, SIZE, 'shm-remap'),
  async cpJson(n) {
    return cp(n, 'json');
  },
  async cpAdvanced(n) {
    return cp(n, 'advanced');
  },
  async pipe(n) {
    const buf = Buffer.alloc(SIZE, 1);
    const child = spawn(process.execPath, [peer, 'pipe', String(SIZE)], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      return await time(n, buf, () => {
        const answer = nextByte(child.stdout);
        child.stdin.write(buf);
        return answer;
      });
    } finally {
      child.stdin.end();
      await exited(child);
    }
  },
  async socket(n) {
    const buf = Buffer.alloc(SIZE, 1);
    const dir = mkdtempSync(join(tmpdir(), 'fdpass-shm-bench-'));
    const server = createServer();
    await new Promise((res) => server.listen(join(dir, 's'), res));
    const conn = new Promise((res) => server.once('connection', res));
    const child = spawn(process.execPath, [peer, 'socket', join(dir, 's'), String(SIZE)], { stdio: 'inherit' });
    const s = await conn;
    try {
      return await time(n, buf, () => {
        const answer = nextByte(s);
        s.write(buf);
        return answer;
      });
    } finally {
      s.end();
      await exited(child);
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  c: (n) => c(n, SIZE),
  c32: (n) => c(n, SIZE / 2),
};

function c(n, size) {
  const out = execFileSync(buildC(), [String(n), String(size)], { encoding: 'utf8' });
  return JSON.parse(out).median;
}

async function cp(n, serialization) {
  const buf = Buffer.alloc(SIZE, 1);
  const child = fork(peer, ['cp'], { serialization, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    return await time(n, buf, () => {
      const answer = new Promise((res) => child.once('message', res));
      child.send(serialization === 'json' ? buf.toString('base64') : buf);
      return answer;
    });
  } finally {
    child.disconnect();
    await exited(child);
  }
}

const LABELS = {
  shm: 'fdpass/shm (sealed memfd over FdSocket, fromFd + close)',
  cpJson: "child_process.send, serialization 'json' (base64 string)",
  cpAdvanced: "child_process.send, serialization 'advanced' (Buffer)",
  pipe: "a pipe (the child's stdin)",
  socket: 'an AF_UNIX socket write (net)',
  c: 'C: memfd over sendmsg, mmap, munmap (the limit)',
  shm32: "fdpass/shm, 32 MiB (below V8's 64 MiB external memory step)",
  shmRemap: 'fdpass/shm, each fd remapped into one buffer (remap)',
  c32: 'C, 32 MiB',
};

export async function runShmBench({ quick, rounds, log }) {
  // Handoffs per round: the copying contenders move 64 MiB each time.
  const counts = quick
    ? { shm: 20, shmRemap: 20, c: 20, shm32: 20, c32: 20, pipe: 2, socket: 2, cpAdvanced: 1, cpJson: 1 }
    : { shm: 200, shmRemap: 200, c: 200, shm32: 200, c32: 200, pipe: 5, socket: 5, cpAdvanced: 2, cpJson: 1 };
  const per = Object.fromEntries(Object.keys(counts).map((k) => [k, []]));
  const errors = [];
  for (let r = 0; r < rounds; r++) {
    for (const id of Object.keys(counts)) {
      try {
        per[id].push(await contenders[id](counts[id]));
      } catch (err) {
        errors.push(`${id}: ${err.message}`);
      }
    }
    log(
      `  shm round ${r + 1}/${rounds}: ${Object.keys(counts)
        .map((id) => `${id} ${((per[id][r] ?? NaN) * 1e3).toFixed(3)} ms`)
        .join(', ')}`,
    );
  }
  const ratios = (a, b) => {
    const xs = [];
    for (let r = 0; r < rounds; r++) if (per[a][r] && per[b][r]) xs.push(per[a][r] / per[b][r]);
    return xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) } : null;
  };
  return {
    size: SIZE,
    counts,
    errors,
    results: Object.keys(counts).map((id) => ({ id, label: LABELS[id], ms: per[id].length ? median(per[id]) * 1e3 : null, runs: per[id] })),
    // shm's time over C's (target <= 2), child_process.send's over shm's (target >= 100).
    shmVsC: ratios('shm', 'c'),
    shm32VsC32: ratios('shm32', 'c32'),
    shmRemapVsC: ratios('shmRemap', 'c'),
    cpJsonVsShm: ratios('cpJson', 'shm'),
    cpAdvancedVsShm: ratios('cpAdvanced', 'shm'),
    pipeVsShm: ratios('pipe', 'shm'),
    socketVsShm: ratios('socket', 'shm'),
  };
}

export function printShm(s, log) {
  const fmt = (x, d = 2) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const span = (r, d = 2) => (r ? `${fmt(r.median, d)}x (rounds: ${fmt(r.min, d)} to ${fmt(r.max, d)})` : '-');
  log(`\nhand a ${s.size >> 20} MiB buffer to another process, which reads its last byte and answers (per handoff, median)`);
  log('| contender | ms per handoff | handoffs per round |');
  log('| --- | ---: | ---: |');
  for (const r of s.results) log(`| ${r.label} | ${fmt(r.ms, 3)} | ${s.counts[r.id]} |`);
  log(`fdpass/shm vs C: ${span(s.shmVsC)} the time (target <= 2x); at 32 MiB: ${span(s.shm32VsC32)}; remap: ${span(s.shmRemapVsC)}`);
  log(`child_process.send vs fdpass/shm: json ${span(s.cpJsonVsShm, 0)}, advanced ${span(s.cpAdvancedVsShm, 0)} the time (target >= 100x)`);
  log(`pipe vs fdpass/shm: ${span(s.pipeVsShm, 0)}; socket write vs fdpass/shm: ${span(s.socketVsShm, 0)}`);
  for (const e of s.errors) log(`shm bench FAILED: ${e}`);
}
