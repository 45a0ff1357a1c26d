// The service manager's end of $NOTIFY_SOCKET (sd_notify(3)): a datagram
// socket that reads notifications through the io core (a Pump whose step is
// one readBatch) with the sender's pid from SCM_CREDENTIALS, and turns each
// into a Notification or a refusal. What a
// notification means to the supervised process is the supervisor's business.
import { randomBytes } from 'node:crypto';
import {
  encodeAddress,
  systemError,
  discardFds,
  bindSocket,
  Pump,
  native,
  FLAG_CTRUNC,
  FLAG_TRUNC,
  readBatch,
  type RawEntry,
} from '../internal.js';

/** The longest notification read (systemd's NOTIFY_BUFFER_MAX, PIPE_BUF); longer ones are refused. */
export const NOTIFY_MAX_BYTES = 4096;

/** One notification from a process that may send them: its `KEY=VALUE` lines, and its fds (the receiver's). */
export interface Notification {
  pid: number;
  fields: Map<string, string>;
  fds: number[];
}

export interface NotifyHandlers {
  /** Whether `pid` may notify (a supervised process or one of its descendants). */
  allow(pid: number): boolean;
  /** A notification that passed the checks; its fds are the handler's to keep or close. */
  message(n: Notification): void;
  /** A datagram refused, and why; its fds were closed. */
  refused(pid: number, reason: string): void;
  /** Reading failed (the socket is watched no more if watching failed). */
  failed(err: Error): void;
}

/** `@name` for NOTIFY_SOCKET: an abstract address, no file to leave behind; senders are checked by pid. */
function abstractName(): string {
  return `fdpass-run/${process.pid}/${randomBytes(6).toString('hex')}`;
}

export class NotifyServer {
  /** The value for NOTIFY_SOCKET. */
  readonly address: string;
  readonly #pump: Pump;
  readonly #handlers: NotifyHandlers;
  #entries: RawEntry[] = [];
  #pids: number[] = [];

  constructor(handlers: NotifyHandlers) {
    const name = abstractName();
    const fd = bindSocket(encodeAddress({ abstract: name }), native.SOCK_DGRAM);
    const r = native.setSocketFlag(fd, native.SO_PASSCRED, 1);
    if (r < 0) {
      native.close(fd);
      throw systemError(r, 'setsockopt');
    }
    this.address = `@${name}`;
    this.#handlers = handlers;
    // Always read: a notification waits for nobody.
    this.#pump = new Pump(fd, {
      demand: () => true,
      step: () => this.#step(),
      readFailed: (errno) => handlers.failed(systemError(errno, 'recvmsg')),
      failed: (err) => handlers.failed(err),
    });
    this.#pump.pump();
  }

  /** One batch: READ_MORE and READ_DRAINED are the pump's MORE and DRAINED. */
  #step(): number {
    const entries = this.#entries;
    const pids = this.#pids;
    const r = readBatch(this.#pump.fd, 16, NOTIFY_MAX_BYTES, false, entries, pids);
    try {
      for (let i = 0; i < entries.length; i++) this.#take(entries[i]!, pids[i]!);
    } finally {
      entries.length = 0;
      pids.length = 0;
    }
    return r;
  }

  #take(entry: RawEntry, pid: number): void {
    if (entry instanceof Error) return;
    const { fds } = entry;
    const refuse = (reason: string): void => {
      discardFds(fds);
      this.#handlers.refused(pid, reason);
    };
    if (pid <= 0) return refuse('no sender credentials');
    if (!this.#handlers.allow(pid)) return refuse('the sender is not a supervised process');
    if (entry.flags & FLAG_CTRUNC) return refuse(`its fds did not fit (MSG_CTRUNC): ${fds.length} arrived and were closed`);
    if (entry.flags & FLAG_TRUNC) return refuse(`longer than ${NOTIFY_MAX_BYTES} bytes`);
    if ((entry.control & 0xff) > 1) return refuse('more than one SCM_RIGHTS');
    const data = entry.data;
    if (data.length === 0) return refuse('empty');
    if (data.includes(0)) return refuse('contains a NUL byte');
    const text = data.toString('utf8');
    if (text.includes('\ufffd')) return refuse('not UTF-8');
    const fields = new Map<string, string>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const eq = line.indexOf('=');
      if (eq <= 0) return refuse(`a line without KEY=VALUE: ${JSON.stringify(line.slice(0, 60))}`);
      fields.set(line.slice(0, eq), line.slice(eq + 1));
    }
    if (fields.size === 0) return refuse('no KEY=VALUE line');
    this.#handlers.message({ pid, fields, fds });
  }

  close(): void {
    this.#pump.close();
  }
}
