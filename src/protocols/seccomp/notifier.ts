// SeccompNotifier: the agent's side of seccomp user notification
// (seccomp_unotify(2)). The kernel stops a process at a syscall its filter
// marks SCMP_ACT_NOTIFY and waits for the holder of the notify fd to answer:
// let it run, fail it with an errno, return a value, or inject an fd.
//
// The notify fd polls readable while a notification waits and hangs up once
// every process of the filter is gone. Receiving blocks when nothing is
// pending, whatever O_NONBLOCK says, so one receive is made per readiness,
// and only while somebody asked for a request (read on demand): the core's
// watcher says when, the addon checks again right before the ioctl.
import { read, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { constants } from 'node:os';
import {
  ErrorCodes,
  FdPassError,
  abortError,
  checkSignal,
  closedError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
  checkFdNumber,
  toFd,
  type FdLike,
  DRAINED,
  ENDED,
  Pump,
  native,
} from '../internal.js';
import { archName, syscallName } from './names.js';

/** A syscall waiting for the agent's answer (struct seccomp_notif). */
export interface SeccompRequest {
  /** The notification's cookie: what respond(), addFd() and isValid() refer to. */
  readonly id: bigint;
  /** The thread that made the syscall, in our pid namespace (0 if invisible from it). */
  readonly pid: number;
  /** The syscall number, as the architecture numbers it. */
  readonly nr: number;
  /** The syscall's name on x86_64 and aarch64; undefined where unknown. */
  readonly syscall: string | undefined;
  /** The architecture of the call ('x86_64', 'aarch64', 'i386'...; hex for others). */
  readonly arch: string;
  /** The six argument registers, unsigned (BigInt.asIntN(64, a) for a signed view). */
  readonly args: readonly bigint[];
  readonly instructionPointer: bigint;
}

/**
 * The answer to a request: let the syscall run as if no filter were there
 * (`continue`; not for security decisions, the target may change the
 * arguments before the kernel reads them), fail it with an errno (a name or
 * a positive number), or make it return `value` without running it.
 */
export type SeccompResponse = { continue: true } | { error: string | number } | { value: number | bigint };

export interface SeccompAddFdOptions {
  /**
   * Answer the request with the new fd: the syscall returns its number in the
   * target (SECCOMP_ADDFD_FLAG_SEND, Linux >= 5.14). Default false: the fd
   * is installed and the request still waits for respond().
   */
  send?: boolean;
  /** Install at this fd number in the target (replacing what is there); default the lowest free number. */
  targetFd?: number;
  /** Close-on-exec in the target; default false. */
  cloexec?: boolean;
}

export interface SeccompNextOptions {
  signal?: AbortSignal;
}

const NOTIF_SIZE = 80;
const RECEIVED = 0;
const HUNG_UP = 1;
const ENOENT = -2;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const MAX_ERRNO = 4095;
const PAGE = 4096;

interface Waiter {
  resolve: (r: SeccompRequest | null) => void;
  reject: (e: Error) => void;
  cleanup: (() => void) | null;
}

function ioctlError(errno: number, request: string): FdPassError {
  const err = systemError(errno, 'ioctl');
  err.message = `ioctl(${request}) ${err.message.slice('ioctl '.length)}`;
  return err;
}

function checkRequest(req: unknown): SeccompRequest {
  if (req === null || typeof req !== 'object' || typeof (req as { id?: unknown }).id !== 'bigint') {
    throw invalidArgType('request', 'a request from this notifier (an object with a bigint id)', req);
  }
  return req as SeccompRequest;
}

function errnoNumber(error: unknown): number {
  if (typeof error === 'string') {
    const n = (constants.errno as Record<string, number | undefined>)[error];
    if (n === undefined) throw invalidArgValue('response.error', 'is not an errno name', error);
    return n;
  }
  if (typeof error !== 'number') throw invalidArgType('response.error', 'an errno name or number', error);
  if (!Number.isInteger(error) || error < 1 || error > MAX_ERRNO)
    throw outOfRange('response.error', `an errno from 1 to ${MAX_ERRNO}`, error);
  return error;
}

function checkResponse(response: unknown): { value: bigint; error: number; cont: number } {
  if (response === null || typeof response !== 'object') throw invalidArgType('response', 'of type object', response);
  const r = response as Record<string, unknown>;
  const keys = ['continue', 'error', 'value'].filter((k) => r[k] !== undefined);
  if (keys.length !== 1) throw invalidArgValue('response', 'must have exactly one of continue, error, value', response);
  if (keys[0] === 'continue') {
    if (r.continue !== true) throw invalidArgValue('response.continue', 'must be true', r.continue);
    return { value: 0n, error: 0, cont: 1 };
  }
  if (keys[0] === 'error') return { value: 0n, error: -errnoNumber(r.error), cont: 0 };
  const v = r.value;
  let big: bigint;
  if (typeof v === 'bigint') big = v;
  else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw outOfRange('response.value', 'a safe integer or a bigint', v);
    big = BigInt(v);
  } else throw invalidArgType('response.value', 'of type number or bigint', v);
  if (big < INT64_MIN || big > INT64_MAX) throw outOfRange('response.value', 'a 64-bit signed integer', v);
  return { value: BigInt.asUintN(64, big), error: 0, cont: 0 };
}

/**
 * The agent's side of a seccomp notify fd (from `listenSeccompAgent`'s
 * `fds.seccompFd`, or any filter made with SECCOMP_FILTER_FLAG_NEW_LISTENER).
 * Iterate it for requests and answer each one; the iteration ends once every
 * process of the filter is gone. The notifier owns the fd (close-on-exec):
 * close() closes it, and requests not answered by then fail in their
 * processes with ENOSYS, as the kernel does.
 */
export class SeccompNotifier implements AsyncIterable<SeccompRequest>, Disposable {
  #fd: number;
  readonly #reader: Pump;
  #hungUp = false;
  #waiters: Waiter[] = [];
  readonly #buffer = new Uint8Array(NOTIF_SIZE);
  readonly #u64 = new BigUint64Array(this.#buffer.buffer);
  readonly #u32 = new Uint32Array(this.#buffer.buffer);
  readonly #i32 = new Int32Array(this.#buffer.buffer);

  /**
   * Take a seccomp notify fd. An fd that is not one (`anon_inode:seccomp
   * notify` in /proc/self/fd) is refused with ERR_FDPASS_BAD_FD and stays
   * open, with the caller; one that is not open gives EBADF.
   */
  constructor(fd: number) {
    checkFdNumber(fd);
    const flags = native.getFlags(fd);
    if (flags < 0) throw systemError(flags, 'fcntl');
    let link = '';
    try {
      link = readlinkFd(fd);
    } catch {
      // not an fd /proc can show: refused below
    }
    if (link !== 'anon_inode:seccomp notify')
      throw new FdPassError(ErrorCodes.BAD_FD, `fd ${fd} is not a seccomp notify fd (${link || 'unknown'})`);
    const r = native.setFlags(fd, 1, -1);
    if (r < 0) throw systemError(r, 'fcntl');
    this.#fd = fd;
    this.#reader = new Pump(fd, {
      demand: () => this.#waiters.length > 0 && !this.#hungUp,
      step: () => this.#step(),
      readFailed: (errno) => this.#fail(ioctlError(errno, 'SECCOMP_IOCTL_NOTIF_RECV')),
      failed: (err) => this.#fail(err),
    });
  }

  /** The notify fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * The next request, or null once every process of the filter is gone (or
   * the notifier was closed). An aborted `signal` rejects with an AbortError.
   */
  next(options?: SeccompNextOptions): Promise<SeccompRequest | null> {
    let signal: AbortSignal | undefined;
    try {
      signal = checkSignal(options?.signal);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#fd < 0 || this.#hungUp) return Promise.resolve(null);
    return new Promise<SeccompRequest | null>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, cleanup: null };
      if (signal) {
        const onAbort = (): void => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          this.#reader.update();
          reject(abortError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#waiters.push(waiter);
      this.#reader.pump();
    });
  }

  /** Requests as they come, until the filter's processes are gone. Leaving a loop does not close the notifier. */
  [Symbol.asyncIterator](): AsyncIterableIterator<SeccompRequest> {
    const iterator: AsyncIterableIterator<SeccompRequest> = {
      next: async (): Promise<IteratorResult<SeccompRequest>> => {
        const req = await this.next();
        return req === null ? { value: undefined, done: true } : { value: req, done: false };
      },
      return: async (): Promise<IteratorResult<SeccompRequest>> => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /**
   * The pump's step: receive one notification. Once per readiness, never
   * "until EAGAIN": a receive when nothing is pending would block (the addon
   * asks poll(2) first, and says EAGAIN then), and a notification whose
   * target died leaves the kernel's count behind, so a second receive
   * would block.
   */
  #step(): number {
    const r = native.seccompRecv(this.#fd, this.#buffer);
    if (r === RECEIVED) {
      const w = this.#waiters.shift()!;
      w.cleanup?.();
      w.resolve(this.#decode());
      return DRAINED;
    }
    if (r === HUNG_UP) {
      this.#hangUp();
      return ENDED;
    }
    // ENOENT: its target died between readiness and receive; wait for the next.
    return r === ENOENT ? DRAINED : r;
  }

  #decode(): SeccompRequest {
    const u64 = this.#u64;
    const audit = this.#u32[5]!;
    const arch = archName(audit);
    const nr = this.#i32[4]!;
    return {
      id: u64[0]!,
      pid: this.#u32[2]!,
      nr,
      syscall: syscallName(nr, arch),
      arch,
      args: [u64[4]!, u64[5]!, u64[6]!, u64[7]!, u64[8]!, u64[9]!],
      instructionPointer: u64[3]!,
    };
  }

  #hangUp(): void {
    this.#hungUp = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      w.cleanup?.();
      w.resolve(null);
    }
  }

  #fail(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      w.cleanup?.();
      w.reject(error);
    }
  }

  #check(): number {
    if (this.#fd < 0) throw closedError('seccomp notifier');
    return this.#fd;
  }

  /**
   * Answer a request (SECCOMP_IOCTL_NOTIF_SEND). Arguments are checked
   * before anything is sent (TypeError, RangeError). Rejects with ENOENT when
   * the request is no longer pending (its process died, or took an answer),
   * EINPROGRESS when it was answered and its process has not woken yet.
   */
  respond(request: SeccompRequest, response: SeccompResponse): Promise<void> {
    const req = checkRequest(request);
    const { value, error, cont } = checkResponse(response);
    const fd = this.#check();
    const r = native.seccompSend(fd, req.id, value, error, cont);
    return r < 0 ? Promise.reject(ioctlError(r, 'SECCOMP_IOCTL_NOTIF_SEND')) : Promise.resolve();
  }

  /**
   * Install a copy of `fd` in the requesting process
   * (SECCOMP_IOCTL_NOTIF_ADDFD); resolves with its number there. With
   * `send: true` the syscall returns that number and the request is
   * answered (an `openat` of a path you serve, say). `fd` stays yours.
   * Rejects with ENOENT (or ESRCH) when the request's process is gone.
   */
  addFd(request: SeccompRequest, fd: FdLike, options: SeccompAddFdOptions = {}): Promise<number> {
    const req = checkRequest(request);
    const src = toFd(fd);
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const { send = false, targetFd, cloexec = false } = options;
    if (typeof send !== 'boolean') throw invalidArgType('options.send', 'of type boolean', send);
    if (typeof cloexec !== 'boolean') throw invalidArgType('options.cloexec', 'of type boolean', cloexec);
    const target = targetFd === undefined ? -1 : checkFdNumber(targetFd, 'options.targetFd');
    const notifyFd = this.#check();
    const r = native.seccompAddfd(notifyFd, req.id, src, target, send ? 1 : 0, cloexec ? 1 : 0);
    return r < 0 ? Promise.reject(ioctlError(r, 'SECCOMP_IOCTL_NOTIF_ADDFD')) : Promise.resolve(r);
  }

  /**
   * Whether the request is still pending (SECCOMP_IOCTL_NOTIF_ID_VALID):
   * false once its process died or the syscall was interrupted. Check it
   * after reading the process's memory and before acting on what you read:
   * the pid may have been reused in between.
   */
  isValid(request: SeccompRequest): boolean {
    const req = checkRequest(request);
    const r = native.seccompIdValid(this.#check(), req.id);
    if (r === 0) return true;
    if (r === ENOENT) return false;
    throw ioctlError(r, 'SECCOMP_IOCTL_NOTIF_ID_VALID');
  }

  /**
   * A NUL-ended string (UTF-8) at `address` in the requesting process's
   * memory (/proc/PID/mem, read off the event loop), such as a path argument:
   * `readString(req, req.args[1])` for openat. Checked with isValid() after
   * reading: ENOENT when the request is gone, for the memory may then belong
   * to another process. ERR_FDPASS_MESSAGE_TOO_LARGE when no NUL comes within
   * maxBytes (default 4096, PATH_MAX); EIO for an address not mapped.
   */
  async readString(request: SeccompRequest, address: bigint | number, maxBytes = 4096): Promise<string> {
    const req = checkRequest(request);
    let at: bigint;
    if (typeof address === 'bigint') at = address;
    else if (typeof address === 'number' && Number.isSafeInteger(address)) at = BigInt(address);
    else throw invalidArgType('address', 'a bigint or a safe integer', address);
    if (at < 0n || at > UINT64_MAX) throw outOfRange('address', 'an unsigned 64-bit address', address);
    if (typeof maxBytes !== 'number') throw invalidArgType('maxBytes', 'of type number', maxBytes);
    if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > 1 << 20)
      throw outOfRange('maxBytes', 'an integer from 1 to 1 MiB', maxBytes);
    this.#check();
    const buf = Buffer.allocUnsafe(maxBytes);
    let got = 0;
    let nul = -1;
    try {
      const mem = await open(`/proc/${req.pid}/mem`, 'r');
      try {
        while (nul < 0 && got < maxBytes) {
          // Up to the end of the page: the next one may not be mapped.
          const inPage = PAGE - Number((at + BigInt(got)) % BigInt(PAGE));
          const want = Math.min(inPage, maxBytes - got);
          const bytesRead = await readAt(mem.fd, buf, got, want, at + BigInt(got));
          if (bytesRead === 0) break;
          nul = buf.indexOf(0, got);
          if (nul >= got + bytesRead) nul = -1;
          got += bytesRead;
        }
      } finally {
        await mem.close();
      }
    } catch (err) {
      // The process is gone (ESRCH, an empty read): say so as ENOENT, like every other call.
      if (!this.isValid(req)) throw ioctlError(ENOENT, 'SECCOMP_IOCTL_NOTIF_ID_VALID');
      throw err;
    }
    if (!this.isValid(req)) throw ioctlError(ENOENT, 'SECCOMP_IOCTL_NOTIF_ID_VALID');
    if (nul < 0) throw new FdPassError(ErrorCodes.MESSAGE_TOO_LARGE, `readString: no NUL within ${maxBytes} bytes at 0x${at.toString(16)}`);
    return buf.toString('utf8', 0, nul);
  }

  /**
   * Close the notify fd: pending next() calls give null, and requests not
   * answered fail in their processes with ENOSYS. Idempotent.
   */
  close(): void {
    if (this.#fd < 0) return;
    this.#fd = -1;
    this.#reader.close();
    this.#hangUp();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** pread(2) at a 64-bit position, on the thread pool. */
function readAt(fd: number, buf: Buffer, offset: number, length: number, position: bigint): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function readlinkFd(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}
