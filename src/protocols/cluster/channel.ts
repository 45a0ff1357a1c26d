// A worker's channel as the cluster primary holds it: a SOCK_SEQPACKET
// connection on the io core (a Pump in hang-up mode, a SendQueue, readBatch
// and the wire rules of recv.ts). The primary decides when to read: while
// `eager()` says so, messages are read as they come; otherwise the channel
// is woken on hang-up only and read when the primary calls readNow() (see
// primary.ts for why acknowledgements are read lazily).
import {
  type FdPassError,
  systemError,
  discardFds,
  ENDED,
  Pump,
  SendQueue,
  BATCH,
  DEFAULT_MAX_BYTES,
  FLAG_EOF,
  MAX_FDS,
  readBatch,
  toReceivedMessage,
  type RawEntry,
} from '../internal.js';

export interface ChannelHandler {
  /** True while messages should be read as they come; otherwise they wait for readNow() or a hang-up. */
  eager(): boolean;
  /** A message from the worker (workers send no fds: any that came are closed). */
  message(data: Buffer): void;
  /** A message broke the wire rules (cut by the kernel); its fds are closed. */
  invalid(err: FdPassError): void;
  /** The worker is gone: end of file (null), or a read or a send failed. */
  gone(err: Error | null): void;
  /** Watching the channel failed: nothing would tell of its messages or its end any more. */
  failed(err: Error): void;
  /** After a pass of reading on readiness (not readNow): acknowledgements may have made room. */
  ran(): void;
}

export class Channel {
  readonly #reader: Pump;
  readonly #sends: SendQueue;
  readonly #handler: ChannelHandler;
  #closed = false;
  #readingNow = false;

  /** Takes `fd` (closed at once if watching it fails, and the error thrown). */
  constructor(fd: number, handler: ChannelHandler) {
    this.#handler = handler;
    this.#sends = new SendQueue(() => this.#reader.update());
    this.#reader = new Pump(
      fd,
      {
        demand: () => !this.#closed && handler.eager(),
        step: () => this.#step(),
        readFailed: (errno) => handler.gone(systemError(errno, 'recvmsg')),
        failed: (err) => handler.failed(err),
        writePending: () => this.#sends.length > 0,
        writable: () => this.#sends.flush(this.#reader.fd),
        ran: () => {
          if (!this.#readingNow) handler.ran();
        },
      },
      { hangup: true },
    );
  }

  /** Sends waiting for room in the kernel. */
  get pendingSends(): number {
    return this.#sends.length;
  }

  /** Send in order; `done` once the kernel has it, or with the error (the channel is then unusable). */
  send(data: Uint8Array, fds: Int32Array | null, done: (err: Error | null) => void): void {
    this.#sends.write(this.#reader.fd, data, fds, done);
  }

  /** Read what the worker sent, now (the lazy read). */
  readNow(): void {
    this.#readingNow = true;
    try {
      this.#reader.readNow();
    } finally {
      this.#readingNow = false;
    }
  }

  /** Watch for what is wanted now: after eager() may have changed. */
  update(): void {
    this.#reader.update();
  }

  /** Run `f` once nothing waits to be sent, or with the error of close(). */
  whenDrained(f: (err: Error | null) => void): void {
    this.#sends.whenDrained(f);
  }

  /** Close the fd; waiting sends settle with `err`. Idempotent. */
  close(err: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sends.close(err);
    this.#reader.close();
  }

  /** The pump's step: read a batch and hand each message on. */
  #step(): number {
    const batch: RawEntry[] = [];
    const r = readBatch(this.#reader.fd, BATCH, DEFAULT_MAX_BYTES, true, batch);
    if (r < 0) return r;
    for (const entry of batch) {
      if (entry instanceof Error) continue; // readBatch reports failures as its result
      if (this.#closed) {
        discardFds(entry.fds);
        continue;
      }
      if (entry.flags & FLAG_EOF) {
        this.#handler.gone(null);
        continue;
      }
      const m = toReceivedMessage(entry, DEFAULT_MAX_BYTES, MAX_FDS, false);
      if (m instanceof Error) {
        this.#handler.invalid(m);
        continue;
      }
      discardFds(m.fds);
      this.#handler.message(m.data);
    }
    return this.#closed ? ENDED : r;
  }
}
