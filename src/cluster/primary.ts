// The primary of fdpass/cluster: accepts connections in batches (accept4 in
// the addon, on the library's Readiness watcher: src/io), hands their fds to worker
// processes over SCM_RIGHTS (many per message), keeps its own copy of each
// until the worker acknowledges it, and re-sends what a dead worker never
// acknowledged.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ErrorCodes, FdPassError, invalidArgType, invalidArgValue, outOfRange, systemError } from '../errors.js';
import { MAX_FDS } from '../fds.js';
import { watch } from '../io/backend.js';
import { POLLIN, type Readiness } from '../io/readiness.js';
import { native } from '../native.js';
import { FdServer } from '../server.js';
import type { FdSocket, ReceivedMessage } from '../socket.js';
import { ClusterListenOptions, OpenListener, checkListenOptions, openListener, unlinkIfOurs } from './listen.js';
import { ACK, CLOSED, ENV_NAME, FDS, LISTENING, ListenerAddress, SERVE, decodeAck, decodeJson, encodeJson } from './protocol.js';

/** A worker process the primary started: a node:cluster Worker or a ChildProcess. */
export interface ForkedWorker {
  once(event: 'exit', listener: (...args: unknown[]) => void): unknown;
}

export interface PrimaryOptions {
  /** Where to accept: one address or several (each with its own name). */
  listen: ClusterListenOptions | readonly ClusterListenOptions[];
  /** 'round-robin' (default) or 'least-loaded' (fewest open connections, as the workers report them). */
  schedule?: 'round-robin' | 'least-loaded';
  /**
   * Starts one worker, e.g. () => cluster.fork(), or (env) => fork('worker.js', { env: { ...process.env, ...env } }).
   * `env` is what the worker needs to find this primary. Without `fork`, start workers yourself.
   */
  fork?: (env: Readonly<Record<string, string>>) => ForkedWorker;
  /** How many workers `fork` starts; default 2. */
  workers?: number;
  /** Start a new worker when one started by `fork` exits; default true. */
  respawn?: boolean;
  /** Connections handed to a worker and not yet acknowledged, at most; default 1024. Beyond it the kernel's backlog holds them. */
  maxUnacked?: number;
  /** Set process.env.FDPASS_CLUSTER so that every child started from now on finds this primary; default true. */
  setEnv?: boolean;
}

/** A worker connected to the primary. */
export interface ClusterWorkerInfo {
  pid: number;
  /** Connections this worker acknowledged since it connected. */
  connections: number;
  /** Its open connections as it last reported them, plus those not yet acknowledged. */
  load: number;
}

/** A worker whose channel closed (it exited, or closed every server). */
export interface ClusterWorkerExit {
  pid: number;
  /** Connections it held as of its last acknowledgement or report (lost if it died). */
  inFlight: number;
  /** Connections it never acknowledged, given to other workers. */
  redispatched: number;
}

export interface ClusterPrimaryEvents {
  /** A worker connected. */
  worker: [worker: ClusterWorkerInfo];
  /** A worker's server now takes the connections of listener `name`. */
  listening: [worker: ClusterWorkerInfo, name: string];
  workerExit: [exit: ClusterWorkerExit];
  error: [error: Error];
  close: [];
}

const ACCEPT_BATCH = 64;
const ACCEPT_BATCHES_PER_WAKE = 4;
const acceptBuf = new Int32Array(ACCEPT_BATCH);
const ECONNABORTED = 103;
const EPROTO = 71;

interface Listener extends OpenListener {
  index: number;
  io: Readiness | null;
  /** Held here: the backend holds it weakly while the interest is 0. */
  poll: () => void;
  /** Accepted or returned fds waiting for a worker (owned by the primary). */
  pending: number[];
  cursor: number;
  backoff: NodeJS.Timeout | null;
}

class Link {
  readonly socket: FdSocket;
  readonly pid: number;
  readonly serves = new Set<number>();
  /** Sent and not acknowledged: the primary's copies, oldest first. */
  fds: number[] = [];
  listeners: number[] = [];
  head = 0;
  load = 0;
  connections = 0;
  closed = false;
  constructor(socket: FdSocket) {
    this.socket = socket;
    this.pid = socket.peer.pid;
  }
  get unacked(): number {
    return this.fds.length - this.head;
  }
  info(): ClusterWorkerInfo {
    return { pid: this.pid, connections: this.connections, load: this.load + this.unacked };
  }
}

let closeScratch = new Int32Array(256);

function closeAll(fds: readonly number[], from: number, to: number): void {
  const n = to - from;
  if (n <= 0) return;
  if (closeScratch.length < n) closeScratch = new Int32Array(n * 2);
  for (let i = 0; i < n; i++) closeScratch[i] = fds[from + i]!;
  native.closeMany(closeScratch, n);
}

/**
 * The accepting side of fdpass/cluster. Start it with ClusterPrimary.start()
 * in the primary process; workers call serve(server).
 */
export class ClusterPrimary extends EventEmitter<ClusterPrimaryEvents> {
  /** The environment a worker needs to find this primary (already in process.env unless setEnv is false). */
  readonly env: Readonly<Record<string, string>>;
  readonly #listeners: Listener[];
  readonly #control: FdServer;
  readonly #links: Link[] = [];
  readonly #leastLoaded: boolean;
  readonly #maxUnacked: number;
  readonly #fork: ((env: Readonly<Record<string, string>>) => ForkedWorker) | undefined;
  readonly #respawn: boolean;
  #closed = false;

  private constructor(listeners: Listener[], control: FdServer, options: PrimaryOptions) {
    super();
    this.#listeners = listeners;
    this.#control = control;
    this.env = { [ENV_NAME]: control.abstract as string };
    this.#leastLoaded = options.schedule === 'least-loaded';
    this.#maxUnacked = options.maxUnacked ?? 1024;
    this.#fork = options.fork;
    this.#respawn = options.respawn ?? true;
    for (const l of listeners) {
      l.poll = () => this.#onListenerPoll(l);
      l.io = watch(l.fd, l.poll);
    }
    control.on('connection', (socket) => this.#addLink(socket));
    control.on('error', (err) => this.emit('error', err));
  }

  /**
   * Listen on every address, start accepting once a worker serves it, and
   * fork `workers` workers if `fork` is given. Bad options throw before
   * anything is opened.
   */
  static async start(options: PrimaryOptions): Promise<ClusterPrimary> {
    if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
    const list = (Array.isArray(options.listen) ? options.listen : [options.listen]) as unknown[];
    if (list.length === 0) throw invalidArgValue('options.listen', 'must name at least one address', options.listen);
    const checked = list.map(checkListenOptions);
    const names = checked.map((o) => o.name ?? 'default');
    if (new Set(names).size !== names.length) throw invalidArgValue('options.listen', 'must have a distinct name per address', names);
    if (options.schedule !== undefined && options.schedule !== 'round-robin' && options.schedule !== 'least-loaded') {
      throw invalidArgValue('options.schedule', "must be 'round-robin' or 'least-loaded'", options.schedule);
    }
    if (options.fork !== undefined && typeof options.fork !== 'function') throw invalidArgType('options.fork', 'a function', options.fork);
    const workers = options.workers ?? 2;
    if (typeof workers !== 'number' || !Number.isInteger(workers) || workers < 0 || workers > 1024) {
      throw outOfRange('options.workers', 'an integer from 0 to 1024', workers);
    }
    const maxUnacked = options.maxUnacked ?? 1024;
    if (typeof maxUnacked !== 'number' || !Number.isInteger(maxUnacked) || maxUnacked < 1) {
      throw outOfRange('options.maxUnacked', 'an integer >= 1', maxUnacked);
    }
    const opened: OpenListener[] = [];
    let control: FdServer | null = null;
    try {
      for (const o of checked) opened.push(await openListener(o));
      control = await FdServer.listen({ abstract: `fdpass-cluster/${process.pid}/${randomBytes(8).toString('hex')}`, type: 'seqpacket' });
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
      io: null,
      poll: () => {},
      pending: [],
      cursor: 0,
      backoff: null,
    }));
    const primary = new ClusterPrimary(listeners, control, options);
    if (options.setEnv !== false) Object.assign(process.env, primary.env);
    if (primary.#fork) for (let i = 0; i < workers; i++) primary.#startWorker();
    return primary;
  }

  /** The address of a listener (by name, default 'default'), as server.address() gives it. */
  address(name = 'default'): ListenerAddress {
    const l = this.#listeners.find((x) => x.name === name);
    if (!l) throw invalidArgValue('name', 'is not the name of a listener', name);
    return l.address;
  }

  /** The workers connected now. */
  get workers(): ClusterWorkerInfo[] {
    return this.#links.map((l) => l.info());
  }

  get closed(): boolean {
    return this.#closed;
  }

  #startWorker(): void {
    const fork = this.#fork!;
    let child: ForkedWorker;
    try {
      child = fork(this.env);
    } catch (err) {
      this.emit('error', err as Error);
      return;
    }
    child.once('exit', () => {
      if (!this.#closed && this.#respawn) this.#startWorker();
    });
  }

  #addLink(socket: FdSocket): void {
    if (this.#closed) {
      void socket.close();
      return;
    }
    const link = new Link(socket);
    this.#links.push(link);
    socket.on('message', (m) => this.#onMessage(link, m));
    socket.on('error', () => this.#dropLink(link));
    socket.on('end', () => this.#dropLink(link));
    this.emit('worker', link.info());
  }

  #onMessage(link: Link, m: ReceivedMessage): void {
    // Workers send no fds: close any that came.
    for (const fd of m.fds) native.close(fd);
    if (link.closed || m.data.length === 0) return;
    try {
      switch (m.data[0]) {
        case ACK:
          return this.#onAck(link, m.data);
        case SERVE: {
          const { name } = decodeJson<{ name: string }>(m.data);
          const l = this.#listeners.find((x) => x.name === name);
          if (!l) {
            void link.socket
              .send(encodeJson(LISTENING, { name, error: `the primary has no listener named ${JSON.stringify(name)}` }))
              .catch(() => {});
            return;
          }
          void link.socket
            .send(encodeJson(LISTENING, { name, index: l.index, address: l.address, eager: this.#leastLoaded }))
            .catch(() => {});
          link.serves.add(l.index);
          this.emit('listening', link.info(), name);
          return this.#kick(l);
        }
        case CLOSED: {
          const { index } = decodeJson<{ index: number }>(m.data);
          link.serves.delete(index);
          return;
        }
        default:
          throw new FdPassError(ErrorCodes.PROTOCOL, `fdpass/cluster: unknown message kind ${m.data[0]}`);
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
    if (ack.refused.length === 0) closeAll(link.fds, start, end);
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
    for (const l of this.#listeners) this.#kick(l);
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
    void link.socket.close();
    for (const [idx, fds] of back) {
      const l = this.#listeners[idx]!;
      l.pending = fds.concat(l.pending);
    }
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
    if (l.pending.length === 0 && l.backoff === null && this.#room(l) > 0) this.#setPolling(l, true);
  }

  #room(l: Listener): number {
    let room = 0;
    for (const link of this.#links) if (link.serves.has(l.index)) room += Math.max(0, this.#maxUnacked - link.unacked);
    return room;
  }

  #onListenerPoll(l: Listener): void {
    if (this.#closed) return;
    // Any event (POLLIN; POLLERR stopped the watching, and accept4 tells why)
    // means: accept if some worker has room. Up to a few batches per wake,
    // then one message per worker for all of them.
    if (l.pending.length > 0) this.#dispatch(l);
    let room = l.pending.length > 0 ? 0 : this.#room(l);
    let interest = false;
    for (let batch = 0; room > 0; batch++) {
      if (batch >= ACCEPT_BATCHES_PER_WAKE) {
        interest = true; // more next turn
        break;
      }
      const n = native.acceptBatch(l.fd, room >= ACCEPT_BATCH ? acceptBuf : acceptBuf.subarray(0, room));
      if (n === native.EAGAIN) {
        interest = true;
        break;
      }
      if (n < 0) {
        if (-n === ECONNABORTED || -n === EPROTO) continue;
        // Out of fds (EMFILE, ENFILE...): the listener stays readable, so
        // stop polling for a while instead of spinning.
        this.emit('error', systemError(n, 'accept4'));
        if (l.pending.length > 0) this.#dispatch(l);
        this.#setPolling(l, false);
        l.backoff = setTimeout(() => {
          l.backoff = null;
          this.#kick(l);
        }, 100);
        return;
      }
      for (let i = 0; i < n; i++) l.pending.push(acceptBuf[i]!);
      room -= n;
    }
    if (l.pending.length > 0) this.#dispatch(l);
    // No room left (or fds still waiting): an acknowledgement or a new worker kicks us.
    this.#setPolling(l, interest && l.pending.length === 0 && room > 0);
  }

  #setPolling(l: Listener, on: boolean): void {
    if (this.#closed || !l.io) return;
    const want = on ? POLLIN : 0;
    if (l.io.interest !== want) l.io.setInterest(want);
  }

  /** Give the listener's pending fds to workers: one message per worker (per 253 fds). */
  #dispatch(l: Listener): void {
    const candidates = this.#links.filter((k) => k.serves.has(l.index) && k.unacked < this.#maxUnacked);
    if (candidates.length === 0) return;
    const shares = new Map<Link, number[]>();
    let taken = 0;
    const pending = l.pending;
    for (; taken < pending.length; taken++) {
      let target: Link | undefined;
      if (this.#leastLoaded) {
        let best = Infinity;
        for (const k of candidates) {
          const load = k.load + k.unacked + (shares.get(k)?.length ?? 0);
          if (load < best && k.unacked + (shares.get(k)?.length ?? 0) < this.#maxUnacked) {
            best = load;
            target = k;
          }
        }
      } else {
        for (let tries = 0; tries < candidates.length && !target; tries++) {
          const k = candidates[l.cursor++ % candidates.length]!;
          if (k.unacked + (shares.get(k)?.length ?? 0) < this.#maxUnacked) target = k;
        }
      }
      if (!target) break;
      let share = shares.get(target);
      if (!share) shares.set(target, (share = []));
      share.push(pending[taken]!);
    }
    l.pending = taken === pending.length ? [] : pending.slice(taken);
    if (l.cursor > 1e9) l.cursor = 0;
    for (const [link, fds] of shares) this.#send(link, l.index, fds);
  }

  #send(link: Link, index: number, fds: number[]): void {
    for (let at = 0; at < fds.length; at += MAX_FDS) {
      const chunk = fds.slice(at, at + MAX_FDS);
      const data = Buffer.allocUnsafe(chunk.length + 1);
      data[0] = FDS;
      data.fill(index, 1);
      for (const fd of chunk) {
        link.fds.push(fd);
        link.listeners.push(index);
      }
      // A failed send shows as the link's end or error: its fds are still
      // in link.fds and go to another worker then.
      link.socket.send(data, chunk).catch(() => this.#dropLink(link));
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
    // Hand out what was accepted before closing the channels.
    for (const l of this.#listeners) if (l.pending.length > 0) this.#dispatch(l);
    this.#closed = true;
    for (const l of this.#listeners) {
      if (l.backoff) clearTimeout(l.backoff);
      l.io?.close(true);
      l.io = null;
      if (l.file) unlinkIfOurs(l.file);
      for (const fd of l.pending) native.close(fd);
      l.pending = [];
    }
    await this.#control.close();
    const links = this.#links.splice(0);
    await Promise.all(
      links.map(async (link) => {
        try {
          await link.socket.end();
        } catch {
          // gone already
        }
        link.closed = true;
        await link.socket.close();
        // The worker has its own copies of everything sent (in its receive
        // queue if not read yet): the primary's go.
        closeAll(link.fds, link.head, link.fds.length);
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
