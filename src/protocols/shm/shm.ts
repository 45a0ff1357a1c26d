// SharedMemory: a file's bytes as an ArrayBuffer (mmap(2)), for memory that
// two processes share by passing the fd. The addon (native/shm.c) creates,
// seals, maps and unmaps; what may be mapped, and how, is decided here.
//
// The hazard a receiver guards against: a mapping outlives changes to the
// file's size. If the sender truncates the file, the pages past the new end
// are gone, and the first access to one of them raises SIGBUS, which kills
// the process (JavaScript cannot catch it). A memfd sealed with
// F_SEAL_SHRINK can never shrink, so fromFd() maps only such files unless
// told otherwise (what Wayland compositors do with wl_shm pools).
import { constants } from 'node:os';
import {
  ErrorCodes,
  FdPassError,
  closedError,
  invalidArgType,
  outOfRange,
  systemError,
  checkFdNumber,
  native,
  type Mapping,
} from '../internal.js';

/**
 * A seal (memfd_create(2), "File sealing"): `'shrink'` and `'grow'` fix the
 * size, `'write'` forbids every write (refused with EBUSY while a writable
 * shared mapping exists, this object's own included), `'future-write'`
 * forbids new writers but lets existing mappings write (Linux >= 5.1),
 * `'seal'` forbids further seals.
 */
export type Seal = 'seal' | 'shrink' | 'grow' | 'write' | 'future-write';

/** Options of {@link SharedMemory.create}. */
export interface SharedMemoryCreateOptions {
  /** The memfd's name, shown in /proc/PID/fd as `/memfd:NAME (deleted)`; at most 249 bytes. Default `fdpass-shm`. */
  name?: string;
  /** Seals to add once the memory is mapped, e.g. `['shrink', 'grow']` before handing the fd to a peer. */
  seals?: readonly Seal[];
}

/** Options of {@link SharedMemory.fromFd}. */
export interface SharedMemoryFromFdOptions {
  /**
   * true: a shared mapping; writes reach the file and every other mapping
   * of it (the fd must be open for writing, and the file not sealed
   * against writes). false (default): a private mapping; the buffer shows
   * the file, and what this process writes into it stays in this process.
   */
  writable?: boolean;
  /**
   * Map a file that is not sealed against shrinking (a plain file, a memfd
   * without F_SEAL_SHRINK). Only for a peer you trust: should the file
   * shrink while it is mapped, the first access to a page past its new end
   * kills this process with SIGBUS. Default false: such an fd is refused
   * with ERR_FDPASS_UNSEALED.
   */
  allowUnsealed?: boolean;
}

/** Options of {@link SharedMemory.remap}. */
export interface SharedMemoryRemapOptions {
  /** As {@link SharedMemoryFromFdOptions.allowUnsealed}. */
  allowUnsealed?: boolean;
}

const SEALS: readonly [Seal, number][] = [
  ['seal', native.F_SEAL_SEAL],
  ['shrink', native.F_SEAL_SHRINK],
  ['grow', native.F_SEAL_GROW],
  ['write', native.F_SEAL_WRITE],
  ['future-write', native.F_SEAL_FUTURE_WRITE],
];

function sealBits(seals: unknown, name: string): number {
  const list = typeof seals === 'string' ? [seals] : seals;
  if (!Array.isArray(list)) throw invalidArgType(name, `a seal or an array of seals (${SEALS.map(([s]) => `'${s}'`).join(', ')})`, seals);
  let bits = 0;
  for (const s of list as unknown[]) {
    const entry = SEALS.find(([n]) => n === s);
    if (!entry) throw invalidArgType(name, `made of ${SEALS.map(([n]) => `'${n}'`).join(', ')}`, s);
    bits |= entry[1];
  }
  return bits;
}

const MAX_NAME = 249; // memfd_create(2): longer names fail with EINVAL
// st_mode's file types (inode(7)), the same on every Linux architecture.
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const KINDS = new Map([
  [0o140000, 'a socket'],
  [0o010000, 'a pipe'],
  [0o040000, 'a directory'],
  [0o020000, 'a character device'],
  [0o060000, 'a block device'],
]);

const stat = new Float64Array(3); // st_mode, st_size, seals or -errno

function statOf(fd: number): { mode: number; size: number; seals: number } {
  const r = native.shmStat(fd, stat);
  if (r < 0) throw systemError(r, 'fstat');
  return { mode: stat[0]!, size: stat[1]!, seals: stat[2]! };
}

/** fstat of an fd fromFd() or remap() may map; throws (fd untouched) when it may not. */
function mappable(fd: number, allowUnsealed: unknown = false): { size: number } {
  if (typeof allowUnsealed !== 'boolean') throw invalidArgType('options.allowUnsealed', 'of type boolean', allowUnsealed);
  const st = statOf(fd);
  if ((st.mode & S_IFMT) !== S_IFREG)
    throw new FdPassError(
      ErrorCodes.BAD_FD,
      `fd ${fd} is ${KINDS.get(st.mode & S_IFMT) ?? 'not a regular file'}: only a file (a memfd, a file on tmpfs or disk) can be mapped`,
    );
  if (!allowUnsealed && (st.seals < 0 || (st.seals & native.F_SEAL_SHRINK) === 0))
    throw new FdPassError(
      ErrorCodes.UNSEALED,
      `fd ${fd} is not sealed against shrinking (F_SEAL_SHRINK): the peer could truncate it under the mapping, ` +
        'and touching a lost page kills the process with SIGBUS; pass allowUnsealed: true to map it anyway',
    );
  return st;
}

function checkSize(size: unknown): number {
  if (typeof size !== 'number') throw invalidArgType('size', 'of type number', size);
  if (!Number.isSafeInteger(size) || size < 0) throw outOfRange('size', 'an integer from 0 to 2^53-1', size);
  return size;
}

/**
 * A file's bytes mapped into this process as an ArrayBuffer: a memfd it
 * created ({@link SharedMemory.create}) or an fd it received
 * ({@link SharedMemory.fromFd}). It owns the fd, which it can hand to
 * another process (`sock.sendFd('name', shm.fd)`), and closes it with the mapping.
 *
 * The mapping lives as long as its buffer: if this object is forgotten, the
 * memory is unmapped and the fd closed when the buffer is collected, or when
 * the worker that made it ends. `close()` (or `using`) does it at once and
 * detaches the buffer (its byteLength becomes 0, views of it read nothing):
 * no JavaScript can reach the memory once it is unmapped.
 */
export class SharedMemory implements Disposable {
  /** The size in bytes, as mapped. */
  readonly size: number;
  /** Whether writes to the buffer reach the file (a shared mapping). */
  readonly writable: boolean;
  #fd: number;
  #buffer: ArrayBuffer;
  #mapping: Mapping | null;

  /** Maps fd (size bytes); the new object owns fd. On failure nothing is taken, fd stays with the caller. */
  private constructor(fd: number, size: number, writable: boolean) {
    if (size > Number.MAX_SAFE_INTEGER) throw systemError(-constants.errno.ENOMEM, 'mmap');
    const r = native.shmMap(fd, size, writable);
    if (typeof r === 'number') {
      if (r === -constants.errno.ENOTSUP)
        throw new FdPassError(
          ErrorCodes.UNSUPPORTED_RUNTIME,
          'fdpass/shm: this runtime refuses external ArrayBuffers (napi_create_external_arraybuffer)',
        );
      throw systemError(r, 'mmap');
    }
    this.#fd = fd;
    this.#buffer = r[0];
    this.#mapping = r[1];
    this.size = size;
    this.writable = writable;
  }

  /**
   * A new memfd of `size` bytes (zero-filled, close-on-exec, sealable),
   * mapped writable and shared. Throws a system error (EMFILE, ENOMEM...)
   * with nothing left open.
   */
  static create(size: number, options: SharedMemoryCreateOptions = {}): SharedMemory {
    checkSize(size);
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const name = options.name ?? 'fdpass-shm';
    if (typeof name !== 'string') throw invalidArgType('options.name', 'of type string', name);
    const bytes = Buffer.from(`${name}\0`, 'utf8');
    if (bytes.length - 1 > MAX_NAME || name.includes('\0'))
      throw outOfRange('options.name', `at most ${MAX_NAME} bytes, without NUL`, name, 'ERR_OUT_OF_RANGE', `${bytes.length - 1} bytes`);
    const seals = options.seals === undefined ? 0 : sealBits(options.seals, 'options.seals');
    const fd = native.memfdCreate(bytes);
    if (fd < 0) throw systemError(fd, 'memfd_create');
    let shm: SharedMemory;
    try {
      const r = native.shmTruncate(fd, size);
      if (r < 0) throw systemError(r, 'ftruncate');
      shm = new SharedMemory(fd, size, true);
    } catch (err) {
      native.close(fd);
      throw err;
    }
    const r = seals === 0 ? 0 : native.addSeals(fd, seals);
    if (r < 0) {
      shm.close();
      throw systemError(r, 'fcntl');
    }
    return shm;
  }

  /**
   * Map what a file descriptor holds (its whole size, from fstat): a memfd
   * or a file a peer sent. On success the SharedMemory owns the fd (and makes
   * it close-on-exec). Refused, with the fd left open and with the caller:
   * an fd that is not a regular file (a socket, a pipe: ERR_FDPASS_BAD_FD),
   * a file not sealed against shrinking (ERR_FDPASS_UNSEALED, unless
   * `allowUnsealed`), a writable mapping of an fd opened read-only (EACCES)
   * or of a file sealed against writes (EPERM), a size beyond the address
   * space (ENOMEM).
   */
  static fromFd(fd: number, options: SharedMemoryFromFdOptions = {}): SharedMemory {
    checkFdNumber(fd);
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const writable = options.writable ?? false;
    if (typeof writable !== 'boolean') throw invalidArgType('options.writable', 'of type boolean', writable);
    const st = mappable(fd, options.allowUnsealed);
    const shm = new SharedMemory(fd, st.size, writable);
    native.setFlags(fd, 1, -1); // close-on-exec: cannot fail on an fd fstat just saw
    return shm;
  }

  /** The fd, or -1 once closed. Still owned by this object: send it, don't close it. */
  get fd(): number {
    return this.#fd;
  }

  /** The mapped bytes; detached (byteLength 0) once closed. */
  get buffer(): ArrayBuffer {
    return this.#buffer;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The file's seals, read now (a peer holding the fd may add some). */
  get seals(): Seal[] {
    if (this.#fd < 0) throw closedError('shared memory');
    const bits = statOf(this.#fd).seals;
    return bits < 0 ? [] : SEALS.filter(([, b]) => (bits & b) !== 0).map(([n]) => n);
  }

  /**
   * Add seals (fcntl F_ADD_SEALS). EPERM when the file is sealed with
   * 'seal' or takes no seals (not a memfd); EBUSY for 'write' while a
   * writable shared mapping exists (this one included: use 'future-write').
   */
  seal(seals: Seal | readonly Seal[]): void {
    const bits = sealBits(seals, 'seals');
    if (this.#fd < 0) throw closedError('shared memory');
    const r = native.addSeals(this.#fd, bits);
    if (r < 0) throw systemError(r, 'fcntl');
  }

  /**
   * Map the file behind another fd into this same buffer, in place of the
   * one mapped now, whose fd is closed; this object then owns `fd`. For a
   * receiver that is handed a new file of the same size again and again
   * (frames, snapshots): the buffer, and every view of it, shows the new
   * file from now on, and no new ArrayBuffer is made. A new external
   * buffer of 64 MiB or more costs a garbage collection in V8 (Node, Deno):
   * its limit for external memory is 64 MiB above the lowest amount since
   * the last collection. The mapping stays shared or private as it was.
   *
   * `fd` is checked as {@link SharedMemory.fromFd} checks it (a regular
   * file, sealed against shrinking unless `allowUnsealed`), and its file
   * must hold exactly `size` bytes (else ERR_FDPASS_BAD_FD). On any failure
   * the old file stays mapped and `fd` stays with the caller.
   */
  remap(fd: number, options: SharedMemoryRemapOptions = {}): void {
    checkFdNumber(fd);
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    if (this.#mapping === null) throw closedError('shared memory');
    const st = mappable(fd, options.allowUnsealed);
    if (st.size !== this.size)
      throw new FdPassError(
        ErrorCodes.BAD_FD,
        `fd ${fd} holds ${st.size} bytes: this mapping's buffer has ${this.size}, and its length cannot change`,
      );
    const r = native.shmRemap(this.#mapping, this.#buffer, fd);
    if (r < 0) throw systemError(r, 'mmap');
    this.#fd = fd;
    native.setFlags(fd, 1, -1); // close-on-exec, as fromFd: cannot fail on an fd fstat just saw
  }

  /**
   * Detach the buffer, unmap the memory and close the fd. Idempotent. Views
   * of the buffer (Uint8Array...) read as empty afterwards.
   */
  close(): void {
    if (this.#mapping === null) return;
    const r = native.shmUnmap(this.#mapping, this.#buffer);
    if (r === -constants.errno.ENOTSUP)
      throw new FdPassError(
        ErrorCodes.UNSUPPORTED_RUNTIME,
        'fdpass/shm: this runtime cannot detach an ArrayBuffer (napi_detach_arraybuffer)',
      );
    this.#mapping = null;
    this.#fd = -1;
    if (r < 0) throw systemError(r, 'close');
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
