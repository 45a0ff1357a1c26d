// The worker side of fdpass/cluster: serve(server) makes a net.Server (an
// http, https or tls server too) take the connections the primary hands over,
// as if it had accepted them itself. Under schedule 'reuseport' the primary's
// answer carries a listening socket of its own, and the server listens on it
// (and still takes what the primary hands over).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server, Socket } from 'node:net';
import {
  FdPassError,
  ErrorCodes,
  invalidArgType,
  closeFds,
  FdSocket,
  runtime,
  unsupportedRuntime,
  type ReceivedMessage,
} from '../internal.js';
import { CLOSED, DRAIN, ENV_NAME, FDS, LISTENING, ListeningReply, SERVE, decodeJson, encodeAck, encodeJson } from './protocol.js';

export interface ServeOptions {
  /** The primary's listener to take connections from; default 'default'. */
  name?: string;
}

// The parts of net.Server that its own accept path uses (lib/net.js
// onconnection) and that node:cluster's workers set the same way.
interface ServerInternals {
  _handle: FakeHandle | null;
  // net.Server.listen({ fd }) without node:cluster's detour: in a node:cluster
  // worker, listen({ fd }) asks the primary to open that fd number (its own).
  _listen2?: (address: null, port: null, addressType: null, backlog: number, fd: number) => void;
  _connections: number;
  _connectionKey?: string;
  _pipeName?: string;
  allowHalfOpen?: boolean;
  pauseOnConnect?: boolean;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  maxConnections?: number;
}

interface SocketInternals {
  server?: Server;
  _server?: Server;
}

interface FakeHandle {
  close(callback?: (...args: unknown[]) => void): void;
  ref(): void;
  unref(): void;
  getsockname?: (out: Record<string, unknown>) => number;
}

/** A serve() waiting for the primary's answer; `cancelled` once the server closed meanwhile. */
interface Waiting {
  name: string;
  server: Server;
  cancelled: boolean;
  onClose: () => void;
}

interface Served {
  server: Server;
  index: number;
  open: boolean;
}

class Channel {
  readonly socket: FdSocket;
  readonly servers = new Map<number, Served>();
  readonly waiting: Waiting[] = [];
  // Every server that took connections here, closed ones too while they drain.
  readonly #all = new Set<ServerInternals>();
  // Servers the primary told to drain ('D') whose connections have not all ended:
  // the channel stays open until they have (its end tells the primary they did).
  readonly #draining = new Set<Server>();
  /** The primary schedules by load: report each close (once per loop turn); else the load goes with acknowledgements only. */
  eager = false;
  #report: NodeJS.Immediate | null = null;
  // Servers that accept by themselves (schedule 'reuseport') report their
  // load at most every LOAD_REPORT_MS, when it changed: the primary has no
  // other way to know what a worker held when it died.
  #ticker: NodeJS.Timeout | null = null;
  #reported = -1;
  // Fds received in this turn of the loop, acknowledged together.
  #ackCount = 0;
  #ackRefused: number[] = [];
  #ackQueued = false;
  readonly #sendReport = (): void => {
    this.#report = null;
    if (!this.socket.closed) void this.socket.send(encodeAck(0, this.#load(), [])).catch(() => {});
  };
  readonly #onSocketClose = (): void => {
    this.#report ??= setImmediate(this.#sendReport);
  };
  /** Open connections: what net counts for each server (it decrements as sockets close). */
  #load(): number {
    let n = 0;
    for (const s of this.#all) n += s._connections;
    return n;
  }
  // One acknowledgement for every fd message delivered in this turn; it runs
  // as a microtask, before the loop polls any of the new sockets, so no byte
  // of a connection is read before the primary knows the worker has it.
  readonly #flushAck = (): void => {
    this.#ackQueued = false;
    const count = this.#ackCount;
    const refused = this.#ackRefused;
    this.#ackCount = 0;
    this.#ackRefused = [];
    this.#cancelReport(); // the acknowledgement carries the load
    this.#reported = this.#load();
    if (!this.socket.closed) void this.socket.send(encodeAck(count, this.#reported, refused)).catch(() => {});
  };
  #cancelReport(): void {
    if (this.#report !== null) clearImmediate(this.#report);
    this.#report = null;
  }
  readonly #tick = (): void => {
    const load = this.#load();
    if (load === this.#reported || this.socket.closed) return;
    this.#reported = load;
    void this.socket.send(encodeAck(0, load, [])).catch(() => {});
  };
  #stopTicker(): void {
    if (this.#ticker !== null) clearInterval(this.#ticker);
    this.#ticker = null;
  }

  constructor(socket: FdSocket) {
    this.socket = socket;
    socket.on('message', (m) => this.#onMessage(m));
    socket.on('error', () => this.#lost());
    socket.on('end', () => this.#lost());
  }

  #onMessage(m: ReceivedMessage): void {
    if (m.data.length === 0) return closeFds(m.fds);
    if (m.data[0] === FDS) return this.#onFds(m.data, m.fds);
    if (m.data[0] === DRAIN) {
      closeFds(m.fds);
      return this.#drain();
    }
    if (m.data[0] !== LISTENING) return closeFds(m.fds);
    let reply: ListeningReply;
    try {
      reply = decodeJson<ListeningReply>(m.data);
    } catch {
      return closeFds(m.fds);
    }
    // A listening socket comes only with an answer that says how to listen.
    const fd = m.fds.length === 1 && reply.backlog !== undefined ? m.fds[0]! : -1;
    if (fd < 0) closeFds(m.fds);
    this.#onListening(reply, fd);
  }

  #onFds(data: Buffer, fds: number[]): void {
    // Decide now, acknowledge at the end of this turn (#flushAck), before
    // any of them is read: a connection the primary gets back (refused, or
    // this process died before the ack) was never touched here.
    const base = this.#ackCount;
    for (let i = 0; i < fds.length; i++) {
      const s = this.servers.get(data[1 + i] ?? -1);
      if (!s?.open) this.#ackRefused.push(base + i);
    }
    this.#ackCount += fds.length;
    if (!this.#ackQueued) {
      this.#ackQueued = true;
      queueMicrotask(this.#flushAck);
    }
    for (let i = 0; i < fds.length; i++) {
      const s = this.servers.get(data[1 + i] ?? -1);
      if (s?.open) this.#connection(s.server, fds[i]!);
      else closeFds([fds[i]!]);
    }
  }

  // What net.Server does with a connection it accepted (lib/net.js onconnection).
  #connection(server: Server, fd: number): void {
    const srv = server as unknown as ServerInternals;
    let socket: Socket;
    try {
      if (srv.maxConnections != null && srv._connections >= srv.maxConnections) throw new Error('over maxConnections');
      socket = new Socket({
        fd,
        readable: true,
        writable: true,
        allowHalfOpen: srv.allowHalfOpen === true,
        pauseOnCreate: srv.pauseOnConnect === true,
      } as ConstructorParameters<typeof Socket>[0]);
    } catch {
      closeFds([fd]);
      return;
    }
    if (srv.noDelay) socket.setNoDelay(true);
    if (srv.keepAlive) socket.setKeepAlive(true, (srv.keepAliveInitialDelay ?? 0) * 1000);
    srv._connections++;
    (socket as unknown as SocketInternals).server = server;
    (socket as unknown as SocketInternals)._server = server;
    if (this.eager) socket.once('close', this.#onSocketClose);
    server.emit('connection', socket);
  }

  /** The primary's answer to serve(); `fd` is this worker's socket of a SO_REUSEPORT group, or -1. */
  #onListening(reply: ListeningReply, fd: number): void {
    const at = this.waiting.findIndex((w) => w.name === reply.name);
    if (at < 0) {
      if (fd >= 0) closeFds([fd]);
      return;
    }
    const { server, cancelled, onClose } = this.waiting.splice(at, 1)[0]!;
    // Unless the server listens on it below, the socket is the primary's alone again.
    if (fd >= 0 && (cancelled || reply.error !== undefined || reply.index === undefined)) closeFds([fd]);
    server.off('close', onClose);
    pendingServe.delete(server);
    if (cancelled) {
      // server.close() came before the answer: the server stays closed, and
      // the primary stops sending what it just started to.
      if (reply.index !== undefined && !this.#maybeClose() && !this.socket.closed) {
        void this.socket.send(encodeJson(CLOSED, { index: reply.index })).catch(() => {});
      }
      return;
    }
    if (reply.error !== undefined || reply.index === undefined) {
      server.emit('error', new FdPassError(ErrorCodes.BAD_ENV, `fdpass/cluster: ${reply.error ?? 'bad answer from the primary'}`));
      this.#maybeClose();
      return;
    }
    if (reply.eager) this.eager = true;
    const served: Served = { server, index: reply.index, open: true };
    this.servers.set(reply.index, served);
    const srv = server as unknown as ServerInternals;
    this.#all.add(srv);
    if (fd >= 0) return this.#listenOn(served, fd, reply.backlog!);
    const address = reply.address ?? null;
    const handle: FakeHandle = {
      close: (callback) => {
        this.#unserve(served);
        if (callback) process.nextTick(callback);
      },
      ref: () => {},
      unref: () => {},
    };
    if (address !== null && typeof address === 'object') {
      handle.getsockname = (out) => {
        Object.assign(out, address);
        return 0;
      };
      srv._connectionKey = `${address.family === 'IPv6' ? 6 : 4}:${address.address}:${address.port}`;
    } else {
      srv._pipeName = address ?? `fdpass-cluster:${reply.name}`;
      srv._connectionKey = `-1:${srv._pipeName}:-1`;
    }
    srv._handle = handle;
    server.emit('listening');
  }

  /**
   * Listen on a socket of the group as net.Server.listen({ fd }) does: the
   * server accepts by itself, counts, drains and closes as usual. Its
   * handle's close() also tells the primary, which then accepts from its
   * own copy of the socket, so nothing waiting in that queue is lost.
   */
  #listenOn(served: Served, fd: number, backlog: number): void {
    const srv = served.server as unknown as ServerInternals;
    if (typeof srv._listen2 === 'function') srv._listen2(null, null, null, backlog, fd);
    else served.server.listen({ fd, backlog });
    const handle = srv._handle;
    if (!handle) {
      // Node could not make a handle of it (its 'error' follows): give the socket back.
      this.#unserve(served);
      return;
    }
    const close = handle.close.bind(handle);
    handle.close = (callback) => {
      this.#unserve(served);
      close(callback);
    };
    this.#ticker ??= setInterval(this.#tick, LOAD_REPORT_MS).unref();
  }

  #unserve(s: Served): void {
    if (!s.open) return;
    s.open = false;
    this.servers.delete(s.index);
    if (!this.#maybeClose() && !this.socket.closed) void this.socket.send(encodeJson(CLOSED, { index: s.index })).catch(() => {});
  }

  /**
   * The primary replaced this worker (ClusterPrimary.reload()): every server
   * stops taking connections (what the primary sent from now on is refused
   * and goes to the other workers), HTTP responses say "Connection: close"
   * so that keep-alive clients reconnect, to another worker, at the end of
   * a response, and once every connection ended the channel closes. net's
   * close, not http's: http's also destroys idle keep-alive connections at
   * once, and a client may have just sent a request on one (they end at
   * the server's keepAliveTimeout instead).
   */
  #drain(): void {
    for (const s of [...this.servers.values()]) {
      const server = s.server;
      if (this.#draining.has(server)) continue;
      this.#draining.add(server);
      server.prependListener('request', closeAfterResponse);
      server.once('close', () => {
        this.#draining.delete(server);
        this.#maybeClose();
      });
      Server.prototype.close.call(server);
    }
    this.#maybeClose();
  }

  /** With no server left, the channel goes: the primary re-sends what is in flight. */
  #maybeClose(): boolean {
    if (this.servers.size > 0 || this.waiting.length > 0 || this.#draining.size > 0) return false;
    if (channel === this) channel = null;
    this.#cancelReport();
    this.#stopTicker();
    void this.socket.close();
    return true;
  }

  /** The primary went away: close every server (they drain), as node:cluster does on disconnect. */
  #lost(): void {
    if (channel === this) channel = null;
    for (const w of this.waiting.splice(0)) {
      pendingServe.delete(w.server);
      w.server.off('close', w.onClose);
      if (!w.cancelled) w.server.emit('error', new FdPassError(ErrorCodes.CLOSED, 'fdpass/cluster: the primary closed the channel'));
    }
    for (const s of [...this.servers.values()]) s.server.close();
    this.#cancelReport();
    this.#stopTicker();
    void this.socket.close();
  }
}

const LOAD_REPORT_MS = 100;

/** A draining server's 'request' listener: this response ends its connection. */
function closeAfterResponse(_req: IncomingMessage, res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
}
let channel: Channel | null = null;
// Servers whose serve() waits for the primary's answer.
const pendingServe = new WeakSet<Server>();
let connecting: Promise<Channel> | null = null;

function getChannel(address: string): Promise<Channel> {
  if (channel && !channel.socket.closed) return Promise.resolve(channel);
  connecting ??= FdSocket.connect({ abstract: address, type: 'seqpacket' }).then(
    (socket) => {
      connecting = null;
      return (channel = new Channel(socket));
    },
    (err: unknown) => {
      connecting = null;
      throw err;
    },
  );
  return connecting;
}

/** True in a process started by an fdpass/cluster primary (FDPASS_CLUSTER is set). */
export function isClusterWorker(): boolean {
  return typeof process.env[ENV_NAME] === 'string' && process.env[ENV_NAME] !== '';
}

/**
 * Make `server` take the connections the primary accepts on its listener
 * `name`, instead of calling server.listen(). The server emits 'listening'
 * once the primary answered (then server.address() is the primary's
 * address), 'connection' for each connection as if it had accepted it, and
 * 'error' if the primary is unreachable or has no such listener.
 * server.close() stops the flow; what was in flight goes to other workers.
 * On Bun it throws ERR_FDPASS_UNSUPPORTED_RUNTIME: Bun's node:net cannot
 * serve a socket by its fd, so workers run on Node or Deno (a primary on
 * Bun can fork them).
 */
export function serve<T extends Server>(server: T, options: ServeOptions = {}): T {
  if (runtime.name === 'bun') {
    // Seen with Bun 1.4.5: new net.Socket({ fd }) of an accepted connection
    // emits 'Socket is closed', an http.Server given one in 'connection'
    // never answers, and listen({ fd }) reports listening but accepts
    // nothing (its http.Server is not a net.Server either).
    throw unsupportedRuntime(
      "cluster workers cannot serve on Bun, whose node:net and node:http cannot take a socket by its fd (new net.Socket({ fd }) closes it, listen({ fd }) accepts nothing); run the workers on Node or Deno (a primary on Bun can fork them: fork: (env) => spawn('node', [file], { env: { ...process.env, ...env } }))",
    );
  }
  if (!(server instanceof Server)) throw invalidArgType('server', 'an instance of net.Server', server);
  if (options === null || typeof options !== 'object') throw invalidArgType('options', 'of type object', options);
  const name = options.name ?? 'default';
  if (typeof name !== 'string' || name === '') throw invalidArgType('options.name', 'a non-empty string', name);
  if (server.listening || pendingServe.has(server)) {
    throw new FdPassError('ERR_SERVER_ALREADY_LISTEN', 'Listen method has been called more than once without closing.');
  }
  const address = process.env[ENV_NAME];
  if (!address) {
    throw new FdPassError(
      ErrorCodes.BAD_ENV,
      `fdpass/cluster: ${ENV_NAME} is not set; start this process from a primary (ClusterPrimary.start)`,
    );
  }
  pendingServe.add(server);
  // server.close() before the primary answered (net emits 'close' at once
  // on a server with no handle): the answer, when it comes, is turned down.
  const waiting: Waiting = {
    name,
    server,
    cancelled: false,
    onClose: () => {
      waiting.cancelled = true;
      pendingServe.delete(server);
    },
  };
  server.once('close', waiting.onClose);
  const failed = (err: unknown): void => {
    pendingServe.delete(server);
    server.off('close', waiting.onClose);
    if (!waiting.cancelled) server.emit('error', err as Error);
  };
  getChannel(address).then((ch) => {
    ch.waiting.push(waiting);
    ch.socket.send(encodeJson(SERVE, { name })).catch(failed);
  }, failed);
  return server;
}
