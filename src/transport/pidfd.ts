// Pidfd: a process as an fd (pidfd_open(2)). It names one process for as long
// as it is open, whatever happens to the pid number: signals go to that
// process or fail with ESRCH, never to a stranger that reused the pid. The
// pidfd polls readable once the process has exited, for any process, child
// or not; exited() waits for that with the core's read pump, whose step
// asks poll(2) whether it has, then asks the kernel how it ended
// (exitStatusOf below).
import { readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { ErrorCodes, FdPassError, abortError, checkSignal, closedError, invalidArgType, outOfRange, systemError } from '../base/errors.js';
import { checkFdNumber } from '../base/fds.js';
import { DRAINED, ENDED, Pump } from '../io/pump.js';
import { WaitQueue } from '../io/waiters.js';
import { native } from '../base/native.js';

/**
 * How a process ended, as {@link Pidfd.exited} resolves: an exit code or a
 * signal, or neither where the kernel cannot tell (`known: false`).
 */
export interface PidfdExitStatus {
  /** The exit code (0-255) when the process exited, else null. */
  code: number | null;
  /** The signal that ended it ('SIGKILL'), else null. */
  signal: NodeJS.Signals | null;
  /** Whether it dumped core (signals only). */
  coreDumped: boolean;
  /**
   * False when the kernel could not tell: Linux < 6.15 (no PIDFD_INFO_EXIT)
   * for a process already reaped by a parent other than us, or one whose
   * exit code /proc does not show us. code and signal are null then.
   */
  known: boolean;
}

/** Options of {@link Pidfd.exited}. */
export interface PidfdExitedOptions {
  /** Stop waiting: the promise rejects with an AbortError; the process is not touched. */
  signal?: AbortSignal;
}

const INT32_MAX = 2 ** 31 - 1;

interface ExitWaiter {
  resolve: (status: PidfdExitStatus) => void;
  reject: (e: Error) => void;
}

function unknownSignal(sig: string): TypeError {
  const err = new TypeError(`Unknown signal: ${sig}`) as TypeError & { code: string };
  err.code = 'ERR_UNKNOWN_SIGNAL';
  return err;
}

/** A signal name ('SIGTERM') or number (0 checks that the process exists) as a number. */
function signalNumber(sig: unknown): number {
  if (typeof sig === 'string') {
    const n = (constants.signals as Record<string, number | undefined>)[sig];
    if (n === undefined) throw unknownSignal(sig);
    return n;
  }
  if (typeof sig !== 'number') throw invalidArgType('signal', 'of type string or number', sig);
  if (!Number.isInteger(sig) || sig < 0 || sig > 64) throw outOfRange('signal', 'an integer from 0 to 64', sig);
  return sig;
}

/** The Pid: line of a pidfd's fdinfo, or undefined for an fd that is no pidfd. */
function pidOf(fd: number): number | undefined {
  let link: string;
  let info: string;
  try {
    link = readlinkSync(`/proc/self/fd/${fd}`);
    info = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
  } catch {
    return undefined;
  }
  const m = /^Pid:\s*(-?\d+)$/m.exec(info);
  return link.includes('pidfd') && m ? Number(m[1]) : undefined;
}

const UNKNOWN: PidfdExitStatus = Object.freeze({ code: null, signal: null, coreDumped: false, known: false });
// A number's first name, as child_process names it: SIGABRT, not its alias SIGIOT (nor SIGPOLL for SIGIO).
const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals)
    .reverse()
    .map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** A wait(2) status as code or signal. */
export function decodeWaitStatus(status: number): PidfdExitStatus {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null, coreDumped: false, known: true };
  return { code: null, signal: signalNames.get(sig) ?? (`SIG${sig}` as NodeJS.Signals), coreDumped: (status & 0x80) !== 0, known: true };
}

/**
 * The exit code field of a zombie's /proc/PID/stat (a wait(2) status), when
 * the kernel shows it to us: it writes 0 for a process we may not inspect
 * (ptrace read access: root, or the same uids and gids), so a 0 is believed
 * only where we may.
 */
function zombieStatus(pid: number): number | undefined {
  let stat: string;
  let status: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  // After the command name (which may hold spaces and parentheses): state is
  // field 3, exit_code field 52.
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .trim()
    .split(' ');
  if (fields[0] !== 'Z' || fields.length < 50) return undefined;
  const euid = process.geteuid?.();
  const egid = process.getegid?.();
  const ids = (key: string): number[] => (new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
  const mayInspect = euid === 0 || (ids('Uid').every((id) => id === euid) && ids('Gid').every((id) => id === egid));
  return mayInspect ? Number(fields[49]) : undefined;
}

/**
 * How the process behind a pidfd that polls readable ended, asked of the
 * kernel in the order that never guesses: the pidfd's exit status (set once
 * the process is reaped; Linux >= 6.15), then waitid(WNOWAIT) for our own
 * unreaped child, then /proc for another's zombie; a process reaped between
 * those is asked again. `kernelInfo` false leaves out the first, as on a
 * kernel without PIDFD_INFO_EXIT. (Not exported by the package; tests use it.)
 */
export function exitStatusOf(fd: number, pid: number, kernelInfo: boolean): PidfdExitStatus {
  for (let attempt = 0; attempt < 2; attempt++) {
    if (kernelInfo) {
      const info = native.pidfdExitInfo(fd);
      if (info >= 0) return decodeWaitStatus(info);
    }
    const waited = native.pidfdWaitStatus(fd);
    if (waited >= 0) return decodeWaitStatus(waited);
    const zombie = pid > 0 ? zombieStatus(pid) : undefined;
    // Still that zombie after reading its file (signal 0 reaches a zombie,
    // ESRCH once reaped): the file was its, not a new process's with its pid.
    if (zombie !== undefined && native.pidfdSendSignal(fd, 0) === 0) return decodeWaitStatus(zombie);
    if (native.pidfdSendSignal(fd, 0) === 0) break; // an unreaped zombie we may not inspect
  }
  return UNKNOWN;
}

/**
 * A pidfd: signal, wait for and take fds from one process, safe from pid
 * reuse. The Pidfd owns its fd (close-on-exec) and closes it in close().
 */
export class Pidfd implements Disposable {
  /**
   * The process id, in our pid namespace, as of when the pidfd was adopted:
   * 0 when the process is in a pid namespace we cannot see, -1 when it had
   * already exited.
   */
  readonly pid: number;
  #fd: number;
  // The core's pump owns the fd: it closes it with close(), and with the
  // end of the environment (a worker) or the collection of a forgotten Pidfd.
  readonly #reader: Pump;
  #exited = false;
  // Asked of the kernel once, when the process is first seen gone.
  #status: PidfdExitStatus | null = null;
  // An aborted wait may leave nobody waiting: stop watching then.
  readonly #waiters = new WaitQueue<ExitWaiter>(() => this.#reader.update());

  /** Takes the fd; on failure it is closed and the error thrown. */
  private constructor(fd: number, pid: number) {
    // A pidfd reports no errors: a POLLERR that poll(2) does not explain as
    // an exit fails the waiters (the pump's rule).
    this.#reader = new Pump(fd, {
      demand: () => this.#waiters.length > 0 && !this.#exited,
      step: () => this.#step(),
      readFailed: (errno) => this.#settle(systemError(errno, 'poll')),
      failed: (err) => this.#settle(err),
    });
    this.#fd = fd;
    this.pid = pid;
  }

  /**
   * A pidfd of the process `pid` (pidfd_open(2)), any process we may see, our
   * child or not. ESRCH when there is no such process; ENOSYS before Linux 5.3.
   */
  static open(pid: number): Pidfd {
    if (typeof pid !== 'number') throw invalidArgType('pid', 'of type number', pid);
    if (!Number.isInteger(pid) || pid < 1 || pid > INT32_MAX) throw outOfRange('pid', `an integer from 1 to ${INT32_MAX}`, pid);
    const fd = native.pidfdOpen(pid);
    if (fd < 0) throw systemError(fd, 'pidfd_open');
    return new Pidfd(fd, pid);
  }

  /**
   * Adopt a pidfd you hold (from `listenPidfdSocket`, a peer, an
   * inheritance): the Pidfd owns it from now on and makes it close-on-exec.
   * An fd that is no pidfd is refused with ERR_FDPASS_BAD_FD (EBADF if it is
   * not open) and left open, with the caller. (Should the event loop refuse
   * to watch a pidfd it accepted, the fd is closed and the error thrown.)
   */
  static fromFd(fd: number): Pidfd {
    checkFdNumber(fd);
    const flags = native.getFlags(fd);
    if (flags < 0) throw systemError(flags, 'fcntl');
    const pid = pidOf(fd);
    if (pid === undefined) throw new FdPassError(ErrorCodes.BAD_FD, `fd ${fd} is not a pidfd`);
    const r = native.setFlags(fd, 1, -1);
    if (r < 0) throw systemError(r, 'fcntl');
    return new Pidfd(fd, pid);
  }

  /** The pidfd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  #check(): number {
    if (this.#fd < 0) throw closedError('pidfd');
    return this.#fd;
  }

  /**
   * Send a signal (pidfd_send_signal(2)): a name ('SIGTERM', the default) or
   * a number; 0 only checks that the process is still there. ESRCH once the
   * process has exited and been reaped (a zombie takes signals and ignores
   * them), EPERM without the right to signal it.
   */
  signal(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    const sig = signalNumber(signal);
    const r = native.pidfdSendSignal(this.#check(), sig);
    if (r < 0) throw systemError(r, 'pidfd_send_signal');
  }

  /**
   * Resolves once the process has exited (the pidfd polls readable), whether
   * or not it is our child; a zombie has exited. It resolves with how it
   * ended, `{ code, signal, coreDumped, known }`, from the kernel: the
   * pidfd's exit status once the process is reaped (PIDFD_INFO_EXIT, Linux
   * >= 6.15), waitid(P_PIDFD, WNOWAIT) for our own child not reaped yet (it
   * stays unreaped for child_process), /proc/PID/stat for another's zombie
   * that we may inspect (root, or same uids and gids); `known: false` when
   * none can tell (on older kernels, a child that Node reaped already: use
   * ChildProcess's 'exit' there). The wait is on the event loop's watcher
   * and keeps the loop alive while it lasts. Rejects with ERR_FDPASS_CLOSED
   * if the Pidfd is closed first, an AbortError on `signal`.
   */
  exited(options?: PidfdExitedOptions): Promise<PidfdExitStatus> {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      return Promise.reject(invalidArgType('options', 'of type object', options));
    }
    let signal: AbortSignal | undefined;
    try {
      signal = checkSignal(options?.signal);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.#status) return Promise.resolve(this.#status);
    if (this.#fd < 0) return Promise.reject(closedError('pidfd'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<PidfdExitStatus>((resolve, reject) => {
      // The pump's first step sees a process that already exited.
      if (this.#waiters.add({ resolve, reject }, signal)) this.#reader.pump();
    });
  }

  /** The pump's step: has the process exited (the pidfd polls readable)? */
  #step(): number {
    const r = native.poll(this.#fd, native.POLLIN, 0);
    if (r < 0) return r;
    if (r === 0) return DRAINED;
    this.#exited = true;
    this.#settle(null);
    return ENDED;
  }

  /** The process is gone: how it ended, asked once. */
  #gone(): PidfdExitStatus {
    this.#exited = true;
    this.#status ??= exitStatusOf(this.#fd, this.pid, true);
    return this.#status;
  }

  #settle(error: Error | null): void {
    const status = error ? null : this.#gone();
    this.#waiters.drain((w) => (status ? w.resolve(status) : w.reject(error!)));
    this.#reader.update();
  }

  /**
   * A copy of the process's fd `targetFd` (pidfd_getfd(2)), close-on-exec and
   * yours to close. EPERM without ptrace rights over the process (root, or
   * the same user where the Yama ptrace_scope allows), EBADF when it has no
   * such fd, ESRCH once it has exited; ENOSYS before Linux 5.6.
   */
  getFd(targetFd: number): number {
    checkFdNumber(targetFd, 'targetFd');
    const r = native.pidfdGetfd(this.#check(), targetFd);
    if (r < 0) throw systemError(r, 'pidfd_getfd');
    return r;
  }

  /** Close the pidfd (the process is not touched); pending exited() calls reject. Idempotent. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    this.#reader.close();
    this.#settle(closedError('pidfd'));
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Adopt a pidfd that fdpass itself just obtained (SO_PEERPIDFD): closes it if
 * it cannot be adopted.
 * @internal
 */
export function adoptPidfd(fd: number): Pidfd {
  try {
    return Pidfd.fromFd(fd);
  } catch (err) {
    native.close(fd);
    throw err;
  }
}

/**
 * A Pidfd of a connected socket's peer (SO_PEERPIDFD), the process that
 * connected (or called socketpair()).
 * @internal
 */
export function peerPidfd(sockFd: number): Pidfd {
  const r = native.peerPidfd(sockFd);
  if (r < 0) throw systemError(r, 'getsockopt');
  return adoptPidfd(r);
}
