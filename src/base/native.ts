// Typed loader for the C addon. The addon is a thin layer over syscalls: every
// function returns a result or a negative errno (see native/fdpass.c).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, FdPassError } from './errors.js';
import { prebuildName } from './platform.js';
import { checkRuntime, envVar } from './runtime.js';

/** Opaque handle of a watcher that owns one fd: a libuv poll handle (io/uv.ts) or an entry of the epoll thread (io/thread.ts). */
export interface Watcher {
  readonly __watcher: unique symbol;
}

/** Opaque record of one mapping (native/shm.c), valid while its ArrayBuffer is alive and attached. */
export interface Mapping {
  readonly __mapping: unique symbol;
}

export interface NativeBinding {
  socket(type: number): number;
  socketpair(type: number, out: Int32Array): number;
  bind(fd: number, address: Uint8Array): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, address: Uint8Array): number;
  acceptBatch(fd: number, out: Int32Array): number;
  sockInfo(fd: number, out: Int32Array): number;
  peerCred(fd: number, out: Int32Array): number;
  setFlags(fd: number, cloexec: number, nonblock: number): number;
  getFlags(fd: number): number;
  /** A boolean SOL_SOCKET option: SO_PASSRIGHTS, SO_PASSPIDFD or SO_PASSCRED. */
  setSocketFlag(fd: number, option: number, on: number): number;
  shutdown(fd: number, how: number): number;
  close(fd: number): number;
  closeMany(fds: Int32Array, count: number): number;
  poll(fd: number, events: number, timeoutMs: number): number;
  sendmsg(
    fd: number,
    data: Uint8Array,
    offset: number,
    length: number,
    fds: Int32Array | null,
    nfds: number,
    address: Uint8Array | null,
  ): number;
  recvBatch(
    fd: number,
    data: Uint8Array,
    fds: Int32Array,
    meta: Int32Array,
    maxMessages: number,
    bytesPerMessage: number,
    fdsPerMessage: number,
    connected: number,
  ): number;
  watch(fd: number, callback: (events: number) => void): Watcher | number;
  setEvents(watcher: Watcher, events: number): number;
  closeWatcher(watcher: Watcher, closeFd: boolean): number;
  threadStart(): number;
  threadWatch(fd: number, callback: (events: number) => void): Watcher | number;
  threadSetEvents(watcher: Watcher, events: number): number;
  threadCloseWatcher(watcher: Watcher, closeFd: boolean): number;
  /** The owned-fd map's bytes (see ownedMap below), owned by this addon instance. */
  readonly ownedMap: ArrayBuffer;
  readonly AF_UNIX: number;
  readonly AF_INET: number;
  readonly AF_INET6: number;
  // native/pidfd.c
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, signal: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  peerPidfd(fd: number): number;
  pidfdExitInfo(pidfd: number): number;
  pidfdWaitStatus(pidfd: number): number;
  // native/seccomp.c
  seccompRecv(fd: number, out: Uint8Array): number;
  seccompSend(fd: number, id: bigint, value: bigint, error: number, continueSyscall: number): number;
  seccompIdValid(fd: number, id: bigint): number;
  seccompAddfd(fd: number, id: bigint, srcFd: number, targetFd: number, send: number, cloexec: number): number;
  // native/tty.c
  readBytes(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  writeBytes(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  setWindowSize(fd: number, cols: number, rows: number): number;
  getWindowSize(fd: number): number;
  // native/inet.c
  inetListen(family: number, address: Uint8Array, port: number, backlog: number, flags: number): number;
  inetSockName(fd: number, out: Uint8Array): number;
  // native/proc.c
  waitpid(pid: number, status: Int32Array): number;
  setSubreaper(): number;
  /** execve(2) of strings[0] with argc arguments and envc environment entries after it, each NUL-terminated: -errno, or never returns. */
  execve(strings: Uint8Array, argc: number, envc: number): number;
  // native/shm.c
  memfdCreate(name: Uint8Array): number;
  shmTruncate(fd: number, size: number): number;
  shmStat(fd: number, out: Float64Array): number;
  addSeals(fd: number, seals: number): number;
  shmMap(fd: number, size: number, shared: boolean): [ArrayBuffer, Mapping] | number;
  shmUnmap(mapping: Mapping, buffer: ArrayBuffer): number;
  /** Maps fd's file over the mapping's own range (mremap), closes the old fd: 0 | -errno. */
  shmRemap(mapping: Mapping, buffer: ArrayBuffer, fd: number): number;
  readonly F_SEAL_SEAL: number;
  readonly F_SEAL_SHRINK: number;
  readonly F_SEAL_GROW: number;
  readonly F_SEAL_WRITE: number;
  readonly F_SEAL_FUTURE_WRITE: number;
  readonly SOCK_STREAM: number;
  readonly SOCK_DGRAM: number;
  readonly SOCK_SEQPACKET: number;
  readonly SO_PASSRIGHTS: number;
  readonly SO_PASSPIDFD: number;
  readonly SO_PASSCRED: number;
  readonly POLLIN: number;
  readonly POLLOUT: number;
  readonly POLLERR: number;
  readonly POLLHUP: number;
  readonly POLLRDHUP: number;
  /** -EAGAIN, as the bindings return it. */
  readonly EAGAIN: number;
  // msg.c: sizes and the layout of recvBatch's meta array
  readonly MAX_FDS: number;
  /** The most fds one message of a batch can bring (the control buffer's room). */
  readonly FD_ROOM: number;
  /** The most messages one recvBatch reads. */
  readonly BATCH: number;
  readonly META_INTS: number;
  readonly META_BYTES: number;
  readonly META_FDS: number;
  readonly META_FLAGS: number;
  readonly META_CONTROL: number;
  readonly META_PID: number;
  /** The sender's pidfd (SCM_PIDFD): an fd, a negative errno the kernel gave instead, or NO_PIDFD. */
  readonly META_PIDFD: number;
  readonly NO_PIDFD: number;
  /** The batch's status int: the socket was found empty. */
  readonly BATCH_DRAINED: number;
  readonly MSG_TRUNC: number;
  readonly MSG_CTRUNC: number;
  readonly FDP_EOF: number;
  // watcher.c: uv_poll_event
  readonly UV_READABLE: number;
  readonly UV_WRITABLE: number;
  readonly UV_DISCONNECT: number;
}

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

/**
 * The addon: FDPASS_NATIVE if set, else one built from source in this
 * package (build/Release), else the prebuild for this OS, CPU and C library
 * (prebuilds/linux-x64, linux-arm64-musl, ...). A candidate that exists but
 * does not load (another libc, too old a glibc) is passed over; when none
 * loads, the error says what was tried and why each failed.
 */
function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  const prebuild = prebuildName();
  const override = envVar('FDPASS_NATIVE');
  const candidates = override
    ? [override]
    : [join(root, 'build', 'Release', 'fdpass.node'), join(root, 'prebuilds', prebuild, 'fdpass.node')];
  const tried: string[] = [];
  for (const file of candidates) {
    if (!existsSync(file)) {
      tried.push(`${file} (missing)`);
      continue;
    }
    try {
      return require(file) as NativeBinding;
    } catch (err) {
      tried.push(`${file} (${(err as Error).message.split('\n')[0]})`);
    }
  }
  throw new FdPassError(
    ErrorCodes.NO_ADDON,
    `fdpass: no native addon loads on ${prebuild}; tried ${tried.join(', ')}. ` +
      'Build one with "npm rebuild fdpass" (needs python3, make and a C compiler).',
  );
}

// A runtime fdpass cannot run on gets ERR_FDPASS_UNSUPPORTED_RUNTIME here, at
// import, before the addon is loaded: never a crash.
checkRuntime();

// The addon's exports object is in V8's dictionary mode (properties added one
// by one): every `native.x` would be a hash lookup. A copy has fast properties.
export const native: NativeBinding = { ...load() };

/**
 * Fds received by the addon and not yet handed to the user: a bit per fd.
 * The addon sets it on receipt, close clears it, handing an fd out clears
 * it; the end of this environment (a worker that exits) closes every fd
 * still marked. The memory belongs to the addon instance.
 */
export const ownedMap: Uint8Array = new Uint8Array(native.ownedMap);
