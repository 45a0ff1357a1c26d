// Acceptor: a listening socket that accepts on demand, in batches, checks
// each peer with `allow` before anything is read, and hands out bare fds
// (with their peer's credentials) for the caller to wrap in whatever it
// needs: FdServer makes FdSockets, UServer makes USockets (FdStreams), the
// cluster primary passes TCP connections on to its workers.
import { systemError } from '../base/errors.js';
import { native } from '../base/native.js';
import { peerCredentials, type PeerCredentials } from './sockops.js';
import { MORE, Pump } from './pump.js';

/** A connection accepted and allowed: its fd is the receiver's. */
export interface Accepted {
  fd: number;
  /** SO_PEERCRED as of connect(); undefined when the Acceptor was told not to ask (TCP). */
  peer: PeerCredentials | undefined;
}

export interface AcceptorOptions {
  /** Keep a connection only if this says yes to its peer's credentials. */
  allow?: ((peer: PeerCredentials) => boolean) | undefined;
  /** Ask each connection for its peer's credentials (SO_PEERCRED, AF_UNIX only); default true. */
  credentials?: boolean;
}

export interface AcceptorHooks {
  /** True while someone wants connections. */
  demand(): boolean;
  /** Hand out one connection; the receiver owns its fd from now on. */
  deliver(conn: Accepted): void;
  /** A failure worth reporting: `allow` threw, or accept4 failed (EMFILE...). */
  error(err: Error): void;
  /** After a pump that handed some connections out: the receiver may act on all of them at once. */
  pumped?(): void;
}

// Connections accepted per step (the pump's budget bounds the steps per wake-up).
const ACCEPT_BATCH = 64;
// After a failure that leaves the listener readable (out of fds), wait this
// long instead of spinning.
const BACKOFF_MS = 100;
const acceptBuf = new Int32Array(ACCEPT_BATCH);

export class Acceptor {
  readonly #reader: Pump;
  readonly #allow: ((peer: PeerCredentials) => boolean) | undefined;
  readonly #credentials: boolean;
  readonly #hooks: AcceptorHooks;
  #ready: Accepted[] = [];
  #backoff: NodeJS.Timeout | null = null;
  #closed = false;
  #delivered = 0;
  #handing = false;

  /** Takes the listening `fd` (closed at once if watching it fails). */
  constructor(fd: number, options: AcceptorOptions, hooks: AcceptorHooks) {
    this.#allow = options.allow;
    this.#credentials = options.credentials ?? true;
    this.#hooks = hooks;
    this.#reader = new Pump(fd, {
      demand: () => !this.#closed && !this.#backoff && this.#hooks.demand(),
      step: () => this.#step(),
      readFailed: (errno) => this.#failed(errno),
      failed: (err) => this.#hooks.error(err),
      ran: () => this.#ran(),
    });
  }

  /** The listening fd, or -1 once closed. */
  get fd(): number {
    return this.#reader.fd;
  }

  /** Hand out accepted connections while there is demand, accepting more as needed. */
  pump(): void {
    // A receiver that asks for more while being handed some is served by this pass.
    if (this.#closed || this.#handing) return;
    this.#handOut();
    if (this.#closed) return;
    this.#reader.pump();
    this.#ran();
  }

  /** Hand out what was accepted, while someone wants it. */
  #handOut(): void {
    this.#handing = true;
    try {
      while (this.#ready.length > 0 && !this.#closed && this.#hooks.demand()) {
        this.#hooks.deliver(this.#ready.shift()!);
        this.#delivered++;
      }
    } finally {
      this.#handing = false;
    }
  }

  /** The pump's step: accept a batch, check each peer, hand them out. */
  #step(): number {
    if (this.#ready.length === 0) {
      const n = native.acceptBatch(this.#reader.fd, acceptBuf);
      if (n < 0) return n;
      for (let i = 0; i < n; i++) this.#admit(acceptBuf[i]!);
    }
    this.#handOut();
    return MORE;
  }

  /** After a pass that handed some connections out: the receiver may act on all of them at once. */
  #ran(): void {
    if (this.#delivered === 0 || this.#closed) return;
    this.#delivered = 0;
    this.#hooks.pumped?.();
  }

  /** Check the peer with `allow` before anything is read; refuse by closing. */
  #admit(fd: number): void {
    if (!this.#credentials) {
      this.#ready.push({ fd, peer: undefined });
      return;
    }
    let peer: PeerCredentials;
    try {
      peer = peerCredentials(fd);
    } catch {
      native.close(fd);
      return;
    }
    if (this.#allow) {
      let ok = false;
      try {
        ok = this.#allow(peer) === true;
      } catch (err) {
        this.#hooks.error(err as Error);
      }
      if (!ok) {
        native.close(fd);
        return;
      }
    }
    this.#ready.push({ fd, peer });
  }

  #failed(errno: number): void {
    const err = systemError(errno, 'accept4');
    if (err.code === 'ECONNABORTED' || err.code === 'EPROTO') return;
    // Out of fds (EMFILE, ENFILE, ENOBUFS...): the listener stays readable,
    // so stop watching for a while instead of spinning; demand is kept.
    this.#hooks.error(err);
    this.#backoff = setTimeout(() => {
      this.#backoff = null;
      this.pump();
    }, BACKOFF_MS);
    this.#backoff.unref?.();
  }

  /**
   * Stop watching and give the listening fd back, open (the cluster primary
   * hands it to a worker). Connections already accepted go to `deliver`
   * first, demand or not: the receiver owns them.
   */
  release(): number {
    const ready = this.#stop();
    if (!ready) return -1;
    for (const c of ready) this.#hooks.deliver(c);
    return this.#reader.release();
  }

  /** Stop: close the listening fd and the connections nobody was handed. */
  close(): void {
    const ready = this.#stop();
    if (!ready) return;
    this.#reader.close();
    for (const c of ready) native.close(c.fd);
  }

  /** No more accepting: the connections accepted and not handed out, or null if already stopped. */
  #stop(): Accepted[] | null {
    if (this.#closed) return null;
    this.#closed = true;
    if (this.#backoff) clearTimeout(this.#backoff);
    this.#backoff = null;
    const ready = this.#ready;
    this.#ready = [];
    return ready;
  }
}
