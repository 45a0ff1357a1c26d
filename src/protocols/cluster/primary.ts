// The primary of fdpass/cluster: accepts connections in batches (the io
// core's Acceptor), hands their fds to worker processes over SCM_RIGHTS (many
// per message, the io core's SendQueue), keeps its own copy of each until the
// worker acknowledges it, and re-sends what a dead worker never acknowledged.
//
// Acknowledgements are read lazily. A worker sends one per loop turn in
// which it received connections, before it reads any of them; if the primary
// watched for them, each would wake it (a context switch per turn of each
// worker, as many as the connections themselves under load). So while a
// worker holds unacknowledged fds and has room for more, its channel is
// watched for POLLRDHUP only (its death still wakes us at once), and its
// acknowledgements are read when the primary wakes anyway: before it hands
// out what it accepted, and at the latest TIDY_MS later. A channel with
// nothing unacknowledged (control messages come then) or no room left (its
// acknowledgements are what we wait for) is watched for POLLIN as usual.
//
// schedule 'reuseport' takes the primary off the path of each connection.
// A TCP listener becomes a SO_REUSEPORT group with one socket per serving
// worker, whose net.Server listens on it and accepts by itself (the kernel
// spreads connections over the group); slots.ts keeps the group, so that no
// socket's queue is lost with its worker.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  encodeAddress,
  ErrorCodes,
  FdPassError,
  invalidArgValue,
  MAX_FDS,
  closeRange,
  Acceptor,
  listenSocket,
  type PeerCredentials,
  native,
  sameUid,
} from '../internal.js';
import { Link, type LinkEvents, type Listener } from './link.js';
import {
  checkPrimaryOptions,
  type ClusterPrimaryEvents,
  type ClusterWorkerInfo,
  type ForkedWorker,
  type PrimaryOptions,
} from './options.js';
import { type OpenListener, openListener, unlinkIfOurs } from './listen.js';
import { schedule } from './schedule.js';
import { orphanSlot, orphanSlotsOf, takeSlot, type SlotHost } from './slots.js';

export type { ClusterPrimaryEvents, ClusterWorkerExit, ClusterWorkerInfo, ForkedWorker, PrimaryOptions } from './options.js';
import { Reloader, checkDrainOptions, type DrainOptions, type ReloadHost, type ReloadOptions } from './reload.js';
import { ACK, CLOSED, DRAIN, ENV_NAME, FDS, LISTENING, ListenerAddress, SERVE, decodeAck, decodeJson, encodeJson } from './protocol.js';

// Acknowledgements waiting in a lazily watched channel are read at least this
// often (they free the primary's copies and make room).
const TIDY_MS = 10;

/**
 * The accepting side of fdpass/cluster. Start it with ClusterPrimary.start()
 * in the primary process; workers call serve(server).
 */
export class ClusterPrimary extends EventEmitter<ClusterPrimaryEvents> {
  /** The environment a worker needs to find this primary (already in process.env unless setEnv is false). */
  readonly env: Readonly<Record<string, string>>;
  readonly #listeners: Listener[];
  readonly #control: Acceptor;
  readonly #links: Link[] = [];
  readonly #leastLoaded: boolean;
  readonly #maxUnacked: number;
  readonly #fork: ((env: Readonly<Record<string, string>>) => ForkedWorker) | undefined;
  readonly #respawn: boolean;
  #closed = false;
  /** drain() began: no respawn, no reload. */
  #stopping = false;
  readonly #respawning = new Set<NodeJS.Timeout>();
  /** Workers `fork` started and that have not exited, by pid; `respawn` false while a reload's replacement or once retired. */
  readonly #forked = new Map<number, { exited: Promise<void>; respawn: boolean }>();
  /** A reload's replacement (pid) -> the worker it replaces: it takes over that worker's group sockets. */
  readonly #heirs = new Map<number, number>();
  readonly #reloader: Reloader;
  #tidy: NodeJS.Timeout | null = null;
  /** When #readLazy last ran (Date.now()). */
  #lastRead = 0;
  readonly #linkEvents: LinkEvents = {
    eager: (link) => this.#eager(link),
    message: (link, data) => this.#onMessage(link, data),
    protocolError: (link, what) => this.#protocolError(link, what),
    gone: (link) => this.#dropLink(link),
    error: (err) => this.emit('error', err),
    ran: (link) => {
      if (link.closed) return;
      this.#watchLink(link);
      for (const l of this.#listeners) this.#kick(l);
    },
  };

  readonly #slotHost: SlotHost = {
    closed: () => this.#closed,
    acceptor: (l, fd) => this.#acceptor(l, fd),
    error: (err) => this.emit('error', err),
    heirOf: (pid) => this.#heirs.get(pid),
    serving: (pid) => this.#links.find((k) => k.pid === pid && !k.closed && k.serves.size > 0),
    listeners: () => this.#listeners,
  };

  private constructor(listeners: Listener[], controlFd: number, controlName: string, options: PrimaryOptions) {
    super();
    this.#listeners = listeners;
    this.env = { [ENV_NAME]: controlName };
    this.#leastLoaded = options.schedule === 'least-loaded';
    this.#maxUnacked = options.maxUnacked ?? 1024;
    this.#fork = options.fork;
    this.#respawn = options.respawn ?? true;
    // Workers connect here; an abstract name has no file permissions, so
    // only our own uid, as FdServer.
    this.#control = new Acceptor(
      controlFd,
      { allow: sameUid },
      {
        demand: () => !this.#closed,
        deliver: (conn) => this.#addLink(conn.fd, conn.peer!),
        error: (err) => this.emit('error', err),
      },
    );
    this.#control.pump();
    this.#reloader = new Reloader(this, this.#reloadHost());
    for (const l of listeners) {
      if (l.slots) orphanSlot(this.#slotHost, l, l.slots[0]!);
      else l.acceptor = this.#acceptor(l, l.fd);
    }
  }

  /** Accept from `fd` for listener `l` while some worker has room (it owns `fd` until released). */
  #acceptor(l: Listener, fd: number): Acceptor {
    // TCP peers have no credentials to ask for; a worker with room is the demand.
    return new Acceptor(
      fd,
      { credentials: false },
      {
        demand: () => !this.#closed && this.#room(l) > l.pending.length,
        deliver: (conn) => l.pending.push(conn.fd),
        error: (err) => this.emit('error', err),
        pumped: () => this.#handOut(l),
      },
    );
  }

  /**
   * Listen on every address, start accepting once a worker serves it, and
   * fork `workers` workers if `fork` is given. Bad options throw before
   * anything is opened.
   */
  static async start(options: PrimaryOptions): Promise<ClusterPrimary> {
    const { checked, workers } = checkPrimaryOptions(options);
    const controlName = options.channel ?? `fdpass-cluster/${process.pid}/${randomBytes(8).toString('hex')}`;
    const controlAddress = encodeAddress({ abstract: controlName }); // throws on a bad name before anything opens
    const opened: OpenListener[] = [];
    let controlFd: number;
    try {
      for (const o of checked) opened.push(await openListener(o, options.schedule === 'reuseport'));
      controlFd = listenSocket(controlAddress, native.SOCK_SEQPACKET, 511, 0o600).fd;
    } catch (err) {
      for (const l of opened) {
        native.close(l.fd);
        if (l.file) unlinkIfOurs(l.file);
      }
      throw err;
    }
    const listeners = opened.map((l, index): Listener => ({
      ...l,
      index,
      acceptor: null,
      slots: l.group ? [{ fd: l.fd, link: null, acceptor: null }] : null,
      pending: [],
      cursor: 0,
    }));
    const primary = new ClusterPrimary(listeners, controlFd, controlName, options);
    if (options.setEnv !== false) Object.assign(process.env, primary.env);
    if (primary.#fork) for (let i = 0; i < workers; i++) primary.#startWorker(true);
    return primary;
  }

  /** The address of a listener (by name, default 'default'), as server.address() gives it. */
  address(name = 'default'): ListenerAddress {
    const l = this.#listeners.find((x) => x.name === name);
    if (!l) throw invalidArgValue('name', 'is not the name of a listener', name);
    return l.address;
  }

  /**
   * Its listening sockets by name, for a new primary (`handoff.add(s, s.name)`);
   * still its own: never close them. Empty once it drains. Under 'reuseport',
   * the group's first socket only (the others end with their workers).
   */
  get sockets(): { name: string; fd: number }[] {
    return this.#closed || this.#stopping ? [] : this.#listeners.map((l) => ({ name: l.name, fd: l.fd }));
  }

  /** The workers connected now, their counts as of the acknowledgements they have sent. */
  get workers(): ClusterWorkerInfo[] {
    if (!this.#closed) this.#readLazy();
    return this.#links.map((l) => l.info());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Start a worker with `fork`: its pid (undefined if `fork` gave none), or null if `fork` threw (emitted as 'error'). */
  #startWorker(respawn: boolean): number | undefined | null {
    const fork = this.#fork!;
    let child: ForkedWorker;
    try {
      child = fork(this.env);
    } catch (err) {
      this.emit('error', err as Error);
      return null;
    }
    const started = Date.now();
    const pid = child.pid ?? child.process?.pid;
    let exited!: () => void;
    const entry = { exited: new Promise<void>((resolve) => (exited = resolve)), respawn };
    if (pid !== undefined) this.#forked.set(pid, entry);
    child.once('exit', () => {
      if (pid !== undefined) this.#forked.delete(pid);
      exited();
      if (this.#closed || this.#stopping || !this.#respawn || !entry.respawn) return;
      // A worker that dies at start-up would be forked in a tight loop:
      // one that lived less than a second is replaced a second later.
      if (Date.now() - started >= 1000) return void this.#startWorker(true);
      const timer = setTimeout(() => {
        this.#respawning.delete(timer);
        if (!this.#closed && !this.#stopping) this.#startWorker(true);
      }, 1000);
      this.#respawning.add(timer);
    });
    return pid;
  }

  /**
   * Replace every worker without a gap: for each (`concurrency` at a time,
   * default 1), `fork` starts a new one; once it serves every listener the
   * old one served, the old one gets no more connections and drains (its
   * servers close, its open connections finish, HTTP responses say
   * "Connection: close"), and once its channel ended, or after
   * `drainTimeout` (default 10000 ms), it gets SIGTERM (SIGKILL another
   * `drainTimeout` later). Under 'reuseport' the new worker listens on the
   * old one's socket of the group, so nothing queued there is lost.
   * Resolves with the new workers' pids once every old one has exited.
   *
   * A replacement that exits, or does not serve within `readyTimeout`
   * (default 30000 ms, then it is drained and stopped the same way): this
   * rejects with ERR_FDPASS_RELOAD_FAILED and replaces no more workers; the
   * old one keeps serving (those replaced before stay replaced). A call
   * while a reload runs waits for it, then reloads again (all calls made
   * meanwhile share that second reload), so every call resolves with
   * workers started after it was made. Needs `fork`.
   */
  reload(options: ReloadOptions = {}): Promise<number[]> {
    return this.#reloader.reload(options);
  }

  /**
   * Hand over and go, or shut down gracefully: stop accepting and close this
   * primary's copies of the listeners (what it accepted goes to the workers
   * first; a socket file stays), drain every worker as reload() drains an old
   * one, then close(). Resolves once every worker `fork` started has exited.
   * How a primary under `fdpass run` (SIGTERM) or a handoff ('takeover')
   * leaves: the new one serves the same listeners already. Waits for a
   * running reload() first.
   */
  async drain(options: DrainOptions = {}): Promise<void> {
    const drainTimeout = checkDrainOptions(options);
    if (this.#closed || this.#stopping) return;
    await this.#reloader.idle();
    if (this.#closed || this.#stopping) return;
    this.#stopping = true;
    for (const timer of this.#respawning) clearTimeout(timer);
    this.#respawning.clear();
    this.#readLazy();
    for (const l of this.#listeners) {
      if (l.pending.length > 0) this.#dispatch(l);
      l.acceptor?.close();
      l.acceptor = null;
      l.file = null;
      // Group sockets the primary accepts from go now; a worker's, once it drained (at close()).
      if (l.slots) {
        for (const slot of l.slots.filter((x) => x.acceptor)) slot.acceptor!.close();
        l.slots = l.slots.filter((x) => !x.acceptor);
      }
    }
    await this.#reloader.drainAll(drainTimeout);
    await this.close();
  }

  /** What reload.ts may do to the primary. */
  #reloadHost(): ReloadHost {
    return {
      canFork: () => this.#fork !== undefined,
      closed: () => this.#closed || this.#stopping,
      forked: () => [...this.#forked.keys()],
      workers: () =>
        this.#links
          .filter((k) => !k.closed && k.serves.size > 0)
          .map((k) => ({ pid: k.pid, serves: [...k.serves].map((i) => this.#listeners[i]!.name) })),
      fork: (heirOf) => {
        const pid = this.#startWorker(false);
        if (pid) this.#heirs.set(pid, heirOf);
        return pid;
      },
      exited: (pid) => this.#forked.get(pid)?.exited ?? null,
      adopt: (pid) => {
        this.#heirs.delete(pid);
        const entry = this.#forked.get(pid);
        if (entry) entry.respawn = true;
      },
      drain: (pid) => {
        const entry = this.#forked.get(pid);
        if (entry) entry.respawn = false;
        const link = this.#links.find((k) => k.pid === pid && !k.closed);
        if (link) {
          // No more connections for it; its group sockets go back to its
          // predecessor (a replacement that failed) or to the primary.
          link.draining = true;
          link.serves.clear();
          orphanSlotsOf(this.#slotHost, link);
          this.#send(link, Uint8Array.of(DRAIN), null);
        }
        this.#heirs.delete(pid);
        return link !== undefined;
      },
    };
  }

  #addLink(fd: number, peer: PeerCredentials): void {
    let link: Link;
    try {
      link = new Link(fd, peer, this.#linkEvents);
    } catch (err) {
      this.emit('error', err as Error); // watching failed; the fd is closed
      return;
    }
    this.#links.push(link);
    this.#watchLink(link);
    this.emit('worker', link.info());
  }

  /**
   * Read a channel as messages come while it holds nothing unacknowledged, or
   * has no room left; else its acknowledgements are read lazily (its death wakes us).
   */
  #eager(link: Link): boolean {
    const unacked = link.unacked;
    return unacked === 0 || unacked >= this.#maxUnacked;
  }

  /** Watch the channel for what #eager says, and read it lazily within TIDY_MS if not. */
  #watchLink(link: Link): void {
    if (link.closed) return;
    link.channel.update();
    if (!this.#eager(link)) this.#tidy ??= setTimeout(this.#onTidy, TIDY_MS).unref();
  }

  readonly #onTidy = (): void => {
    this.#tidy = null;
    this.#readLazy();
    for (const l of this.#listeners) this.#kick(l);
  };

  /** Read the acknowledgements waiting in every lazily watched channel. */
  #readLazy(): void {
    this.#lastRead = Date.now();
    // Backwards: a read that ends a channel removes it from #links.
    for (let i = this.#links.length - 1; i >= 0; i--) {
      const link = this.#links[i];
      if (link && link.unacked > 0 && !link.closed) {
        link.channel.readNow();
        this.#watchLink(link);
      }
    }
  }

  #protocolError(link: Link, what: string): void {
    this.emit('error', new FdPassError(ErrorCodes.PROTOCOL, `fdpass/cluster: ${what}`));
    this.#dropLink(link);
  }

  #send(link: Link, data: Uint8Array, fds: Int32Array | null): void {
    // A failed send drops the channel: the fds it carried are still in
    // link.fds and go to another worker.
    link.channel.send(data, fds, (err) => {
      if (err) this.#dropLink(link);
    });
  }

  #onMessage(link: Link, data: Buffer): void {
    if (data.length === 0) return;
    try {
      switch (data[0]) {
        case ACK:
          return this.#onAck(link, data);
        case SERVE: {
          const { name } = decodeJson<{ name: string }>(data);
          const l = this.#listeners.find((x) => x.name === name);
          if (link.draining) {
            // A replacement that asked too late (reload() gave up on it): it goes.
            this.#send(link, encodeJson(LISTENING, { name, error: 'this worker is draining (replaced or stopped)' }), null);
            return;
          }
          if (!l) {
            this.#send(link, encodeJson(LISTENING, { name, error: `the primary has no listener named ${JSON.stringify(name)}` }), null);
            return;
          }
          const slot = l.slots ? takeSlot(this.#slotHost, l, link) : null;
          const reply = { name, index: l.index, address: l.address, eager: this.#leastLoaded, ...(slot ? { backlog: l.backlog } : {}) };
          this.#send(link, encodeJson(LISTENING, reply), slot ? Int32Array.of(slot.fd) : null);
          link.serves.add(l.index);
          this.emit('listening', link.info(), name);
          return;
        }
        case CLOSED: {
          const { index } = decodeJson<{ index: number }>(data);
          link.serves.delete(index);
          const l = this.#listeners[index];
          if (l) orphanSlotsOf(this.#slotHost, link, l);
          return;
        }
        default:
          return this.#protocolError(link, `unknown message kind ${data[0]}`);
      }
    } catch (err) {
      this.emit('error', err as Error);
      this.#dropLink(link);
    }
  }

  #onAck(link: Link, data: Buffer): void {
    const ack = decodeAck(data);
    const start = link.head;
    const end = Math.min(start + ack.count, link.fds.length);
    link.head = end;
    link.load = ack.load;
    link.connections += end - start - ack.refused.length;
    if (ack.refused.length === 0) closeRange(link.fds, start, end);
    else {
      const refused = new Set(ack.refused);
      for (let i = start; i < end; i++) {
        if (refused.has(i - start)) this.#listeners[link.listeners[i]!]!.pending.push(link.fds[i]!);
        else native.close(link.fds[i]!);
      }
    }
    if (link.head === link.fds.length) {
      link.fds.length = 0;
      link.listeners.length = 0;
      link.head = 0;
    } else if (link.head > 4096) {
      link.fds = link.fds.slice(link.head);
      link.listeners = link.listeners.slice(link.head);
      link.head = 0;
    }
  }

  /** A worker is gone: what it never acknowledged goes to the others. */
  #dropLink(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    const i = this.#links.indexOf(link);
    if (i >= 0) this.#links.splice(i, 1);
    const back = new Map<number, number[]>();
    for (let k = link.head; k < link.fds.length; k++) {
      const idx = link.listeners[k]!;
      let list = back.get(idx);
      if (!list) back.set(idx, (list = []));
      list.push(link.fds[k]!);
    }
    const redispatched = link.unacked;
    link.fds = [];
    link.listeners = [];
    link.head = 0;
    link.channel.close(new FdPassError(ErrorCodes.CLOSED, 'fdpass/cluster: the worker is gone'));
    for (const [idx, fds] of back) {
      const l = this.#listeners[idx]!;
      l.pending = fds.concat(l.pending);
    }
    orphanSlotsOf(this.#slotHost, link);
    if (this.#closed) {
      for (const fds of back.values()) for (const fd of fds) native.close(fd);
      for (const l of this.#listeners) l.pending = [];
    }
    this.emit('workerExit', { pid: link.pid, inFlight: link.load, redispatched });
    for (const l of this.#listeners) this.#kick(l);
  }

  /** Hand out what waits, then accept again if some worker has room. */
  #kick(l: Listener): void {
    if (this.#closed) return;
    if (l.pending.length > 0) this.#dispatch(l);
    l.acceptor?.pump();
    if (l.slots) for (const slot of l.slots) slot.acceptor?.pump();
  }

  /** The Acceptor handed out a batch: learn the workers' room and load, then give it out. */
  #handOut(l: Listener): void {
    // Once per millisecond at most: under load the listener wakes several
    // times a millisecond, and each read is a recvmmsg per worker that mostly
    // finds nothing. Room and load a millisecond old only delay a hand-out;
    // a worker with no room left is watched for its acknowledgements anyway.
    if (Date.now() !== this.#lastRead) this.#readLazy();
    this.#dispatch(l);
  }

  #room(l: Listener): number {
    let room = 0;
    for (const link of this.#links) if (link.serves.has(l.index)) room += Math.max(0, this.#maxUnacked - link.unacked);
    return room;
  }

  /** Give the listener's pending fds to workers: one message per worker (per 253 fds). */
  #dispatch(l: Listener): void {
    const candidates = this.#links.filter((k) => k.serves.has(l.index) && k.unacked < this.#maxUnacked);
    if (candidates.length === 0) return;
    const pending = l.pending;
    const { shares, taken, cursor } = schedule(
      pending,
      candidates,
      this.#leastLoaded ? 'least-loaded' : 'round-robin',
      this.#maxUnacked,
      l.cursor,
    );
    l.pending = taken === pending.length ? [] : pending.slice(taken);
    l.cursor = cursor;
    for (const [link, fds] of shares) {
      for (let at = 0; at < fds.length; at += MAX_FDS) {
        const chunk = fds.slice(at, at + MAX_FDS);
        const data = Buffer.allocUnsafe(chunk.length + 1);
        data[0] = FDS;
        data.fill(l.index, 1);
        for (const fd of chunk) {
          link.fds.push(fd);
          link.listeners.push(l.index);
        }
        this.#send(link, data, Int32Array.from(chunk));
      }
      this.#watchLink(link);
    }
  }

  /**
   * Stop accepting and close the listeners. Connections already handed out
   * stay with their workers; each worker sees its channel end and closes
   * its servers (they drain, then the worker may exit). Workers are not
   * killed or respawned after this.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Hand out what was accepted, and learn what was acknowledged, first.
    this.#readLazy();
    for (const l of this.#listeners) if (l.pending.length > 0) this.#dispatch(l);
    this.#closed = true;
    for (const timer of this.#respawning) clearTimeout(timer);
    this.#respawning.clear();
    if (this.#tidy) clearTimeout(this.#tidy);
    this.#tidy = null;
    for (const l of this.#listeners) {
      l.acceptor?.close();
      l.acceptor = null;
      // The group's sockets: the workers' copies close with their servers.
      for (const slot of l.slots ?? []) {
        if (slot.acceptor) slot.acceptor.close();
        else native.close(slot.fd);
      }
      if (l.slots) l.slots = [];
      if (l.file) unlinkIfOurs(l.file);
      for (const fd of l.pending) native.close(fd);
      l.pending = [];
    }
    this.#control.close();
    const links = this.#links.splice(0);
    await Promise.all(
      links.map(async (link) => {
        // What the kernel could not take yet goes first; the worker reads
        // what is queued for it even after we close, then sees the end.
        await new Promise<void>((resolve) => link.channel.whenDrained(() => resolve()));
        link.closed = true;
        link.channel.close(new FdPassError(ErrorCodes.CLOSED, 'fdpass/cluster: the primary closed'));
        // The worker has its own copies of everything sent (in its receive
        // queue if not read yet): the primary's go.
        closeRange(link.fds, link.head, link.fds.length);
        link.fds = [];
      }),
    );
    if (process.env[ENV_NAME] === this.env[ENV_NAME]) delete process.env[ENV_NAME];
    process.nextTick(() => this.emit('close'));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
