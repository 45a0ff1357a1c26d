// schedule 'reuseport': the sockets of a SO_REUSEPORT group, one a serving
// worker's (its slot), the others the primary's to accept from. The primary
// keeps its copy of every socket until close(), so a slot's queue outlives
// its worker: a slot with no worker is accepted from by the primary (an
// Acceptor, as for any listener) until a new worker takes it over.
import { openGroupSocket } from './listen.js';
import type { Acceptor } from '../internal.js';
import type { Link, Listener, Slot } from './link.js';

/** What the slot functions need of the primary. */
export interface SlotHost {
  closed(): boolean;
  /** An Acceptor that accepts from `fd` for listener `l` and hands out what it accepts. */
  acceptor(l: Listener, fd: number): Acceptor;
  error(err: Error): void;
  /** The pid of the worker that `pid` replaces in a reload, if it is a replacement. */
  heirOf(pid: number): number | undefined;
  /** The connected worker `pid` if it still serves a listener. */
  serving(pid: number): Link | undefined;
  listeners(): readonly Listener[];
}

/** A group socket with no worker: the primary accepts from it and hands out what it accepts. */
export function orphanSlot(host: SlotHost, l: Listener, slot: Slot): void {
  slot.link = null;
  if (host.closed() || slot.acceptor) return;
  try {
    slot.acceptor = host.acceptor(l, slot.fd);
  } catch (err) {
    // Watching failed and the socket is closed: it leaves the group.
    l.slots!.splice(l.slots!.indexOf(slot), 1);
    host.error(err as Error);
    return;
  }
  slot.acceptor.pump();
}

/** A group socket for `link`: one with no worker, or a new one. Null if none could be opened. */
export function takeSlot(host: SlotHost, l: Listener, link: Link): Slot | null {
  // A reload's replacement takes over its predecessor's socket (both
  // accept from its one queue until the predecessor has closed it).
  const from = host.heirOf(link.pid);
  let slot = (from !== undefined && l.slots!.find((s) => s.link?.pid === from && !s.link.closed)) || l.slots!.find((s) => s.link === null);
  if (!slot) {
    try {
      slot = { fd: openGroupSocket(l.group!, l.backlog), link: null, acceptor: null };
    } catch (err) {
      host.error(err as Error);
      return null;
    }
    l.slots!.push(slot);
  }
  if (slot.acceptor) {
    // What it accepted already goes to l.pending, handed out as usual.
    slot.acceptor.release();
    slot.acceptor = null;
  }
  slot.link = link;
  return slot;
}

/** The group sockets `link` had in listener `l` (every listener if none given) go back to the primary. */
export function orphanSlotsOf(host: SlotHost, link: Link, l?: Listener): void {
  // A reload's replacement that goes before it is ready: its predecessor still listens on the socket it took.
  const from = host.heirOf(link.pid);
  const back = from === undefined ? undefined : host.serving(from);
  for (const each of l ? [l] : host.listeners()) {
    for (const slot of each.slots ?? []) {
      if (slot.link !== link) continue;
      if (back?.serves.has(each.index)) slot.link = back;
      else orphanSlot(host, each, slot);
    }
  }
}
