// What the primary keeps of a worker (Link: its channel, what it holds and
// acknowledged) and of a listener (its acceptor, its SO_REUSEPORT slots, the
// connections waiting for a worker).
import type { Acceptor, PeerCredentials } from '../internal.js';
import { Channel } from './channel.js';
import type { OpenListener } from './listen.js';
import type { ClusterWorkerInfo } from './options.js';

/** A socket of a SO_REUSEPORT group: a worker's, or else the primary accepts from it. */
export interface Slot {
  /** The primary's copy, kept until close(). */
  fd: number;
  link: Link | null;
  /** While no worker has it. */
  acceptor: Acceptor | null;
}

export interface Listener extends OpenListener {
  index: number;
  acceptor: Acceptor | null;
  /** schedule 'reuseport', a TCP listener: its group's sockets (slots[0].fd is `fd`). */
  slots: Slot[] | null;
  /** Accepted or returned fds waiting for a worker (owned by the primary). */
  pending: number[];
  cursor: number;
}

/** One worker: its channel (channel.ts) and what it holds. */
export class Link {
  readonly channel: Channel;
  readonly pid: number;
  readonly serves = new Set<number>();
  /** Sent and not acknowledged: the primary's copies, oldest first. */
  fds: number[] = [];
  listeners: number[] = [];
  head = 0;
  load = 0;
  connections = 0;
  closed = false;
  /** Told to drain (reload(), drain()): it serves nothing more. */
  draining = false;

  constructor(fd: number, peer: PeerCredentials, primary: LinkEvents) {
    this.pid = peer.pid;
    this.channel = new Channel(fd, {
      eager: () => primary.eager(this),
      message: (data) => primary.message(this, data),
      invalid: (err) => primary.protocolError(this, err.message),
      gone: () => primary.gone(this),
      failed: (err) => {
        primary.error(err);
        primary.gone(this);
      },
      ran: () => primary.ran(this),
    });
  }

  get unacked(): number {
    return this.fds.length - this.head;
  }

  info(): ClusterWorkerInfo {
    return { pid: this.pid, connections: this.connections, load: this.load + this.unacked };
  }
}

/** What a Link's channel tells the primary. */
export interface LinkEvents {
  eager(link: Link): boolean;
  message(link: Link, data: Buffer): void;
  protocolError(link: Link, what: string): void;
  gone(link: Link): void;
  error(err: Error): void;
  ran(link: Link): void;
}
