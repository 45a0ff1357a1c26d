// Which prebuilt addon fits this process: its OS, CPU and C library. Used by
// the loader (native.ts) and by npm's install script (scripts/install.mjs).
import { closeSync, openSync, readSync } from 'node:fs';

export type Libc = 'glibc' | 'musl';

const PT_INTERP = 3;

/**
 * The ELF interpreter (PT_INTERP) named by an executable, such as
 * `/lib/ld-musl-x86_64.so.1`; null for a static or non-ELF file.
 */
export function elfInterpreter(file: string): string | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const read = (length: number, position: number): Buffer => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, readSync(fd, buf, 0, length, position));
    };
    const h = read(64, 0);
    // "\x7fELF", little-endian (the only byte order of x64 and arm64 Linux).
    if (h.length < 52 || h.readUInt32BE(0) !== 0x7f454c46 || h[5] !== 1) return null;
    const is64 = h[4] === 2;
    const phoff = is64 ? Number(h.readBigUInt64LE(0x20)) : h.readUInt32LE(0x1c);
    const phentsize = h.readUInt16LE(is64 ? 0x36 : 0x2a);
    const phnum = h.readUInt16LE(is64 ? 0x38 : 0x2c);
    if (phnum > 256 || phentsize < (is64 ? 56 : 32)) return null;
    const ph = read(phentsize * phnum, phoff);
    for (let i = 0; (i + 1) * phentsize <= ph.length; i++) {
      const e = ph.subarray(i * phentsize);
      if (e.readUInt32LE(0) !== PT_INTERP) continue;
      const offset = is64 ? Number(e.readBigUInt64LE(8)) : e.readUInt32LE(4);
      const size = is64 ? Number(e.readBigUInt64LE(32)) : e.readUInt32LE(16);
      if (size > 4096) return null;
      const name = read(size, offset);
      const nul = name.indexOf(0);
      return name.subarray(0, nul < 0 ? name.length : nul).toString('latin1');
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

interface ReportHeader {
  glibcVersionRuntime?: string;
}

/**
 * The C library this process runs on: the ELF interpreter of the running
 * executable says it (ld-musl-* or ld-linux-*); for a static executable,
 * Node's process report, which names glibc's version only under glibc.
 */
export function detectLibc(executable: string = process.execPath): Libc {
  const interp = elfInterpreter(executable);
  if (interp !== null) return /ld-musl-/.test(interp) ? 'musl' : 'glibc';
  try {
    const report = process.report?.getReport() as { header?: ReportHeader } | undefined;
    if (report?.header) return report.header.glibcVersionRuntime ? 'glibc' : 'musl';
  } catch {
    // no process report in this runtime
  }
  return 'glibc';
}

/** The folder under prebuilds/ that fits this process: linux-x64, linux-arm64-musl, ... */
export function prebuildName(libc: Libc = process.platform === 'linux' ? detectLibc() : 'glibc'): string {
  return `${process.platform}-${process.arch}${libc === 'musl' ? '-musl' : ''}`;
}
