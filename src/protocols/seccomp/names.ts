// Architectures of seccomp_data.arch (AUDIT_ARCH_*) and syscall names.
import { AARCH64, X86_64 } from './syscalls.js';

const ARCHES = new Map<number, string>([
  [0xc000003e, 'x86_64'],
  [0x40000003, 'i386'],
  [0xc00000b7, 'aarch64'],
  [0x40000028, 'arm'],
  [0xc00000f3, 'riscv64'],
  [0xc0000015, 'ppc64le'],
  [0x80000015, 'ppc64'],
  [0x80000016, 's390x'],
]);

const TABLES = new Map<string, readonly string[]>();

function table(arch: string): readonly string[] | undefined {
  let t = TABLES.get(arch);
  if (!t) {
    const source = arch === 'x86_64' ? X86_64 : arch === 'aarch64' ? AARCH64 : undefined;
    if (source === undefined) return undefined;
    t = source.split(' ');
    TABLES.set(arch, t);
  }
  return t;
}

/** The name of an AUDIT_ARCH_* value ('x86_64', 'aarch64'...), or its hex form. */
export function archName(audit: number): string {
  return ARCHES.get(audit) ?? `0x${audit.toString(16).padStart(8, '0')}`;
}

/**
 * The name of syscall `nr` on `arch` ('x86_64' or 'aarch64'), or undefined
 * (another architecture, an x32 syscall, a number without a syscall).
 */
export function syscallName(nr: number, arch: string): string | undefined {
  const name = table(arch)?.[nr];
  return name && name !== '-' ? name : undefined;
}

/** The number of syscall `name` on `arch` ('x86_64' or 'aarch64'), or undefined. */
export function syscallNumber(name: string, arch: string): number | undefined {
  if (name === '-' || name === '') return undefined;
  const nr = table(arch)?.indexOf(name) ?? -1;
  return nr >= 0 ? nr : undefined;
}
