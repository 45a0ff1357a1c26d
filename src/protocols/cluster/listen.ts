// The primary's listening sockets: TCP (inet.c) or AF_UNIX, made
// non-blocking and close-on-exec, accepted from with acceptBatch.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import {
  encodeAddress,
  FdPassError,
  ErrorCodes,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
  checkFdNumber,
  native,
  listenSocket,
  socketInfo,
  unlinkIfSame,
  type FileId,
  ipBytes,
} from '../internal.js';
import type { ListenerAddress } from './protocol.js';

/** One address the primary accepts on. */
export interface ClusterListenOptions {
  /** What workers ask for in serve(server, { name }); default 'default'. */
  name?: string;
  /** TCP port (0 picks a free one). */
  port?: number;
  /** TCP host, an IP address or a name to look up; default '::' (dual stack), or '0.0.0.0' without IPv6. */
  host?: string;
  /** IPv6 only, no IPv4-mapped connections (IPV6_V6ONLY); default false. */
  ipv6Only?: boolean;
  /** Unix socket path. */
  path?: string;
  /** Mode of the socket file, set before listen(2); default 0o600. */
  mode?: number;
  /** A listening socket you already have (systemd, a handoff): the primary owns it from now on. */
  fd?: number;
  /** listen(2) backlog; default 511. */
  backlog?: number;
}

export interface OpenListener {
  name: string;
  fd: number;
  address: ListenerAddress;
  /** The socket file to unlink at close, with its identity. */
  file: { path: string; dev: number; ino: number } | null;
  /** A TCP listener opened with SO_REUSEPORT: where another socket of its group binds. */
  group: ReuseGroup | null;
  backlog: number;
}

/** Where the sockets of a SO_REUSEPORT group are bound. */
export interface ReuseGroup {
  host: string;
  port: number;
  v6only: boolean;
}

const AF_INET = 2;
const AF_INET6 = 10;
const EAFNOSUPPORT = 97;
const V6ONLY = 1;
const REUSEPORT = 2;

export function checkListenOptions(o: unknown): ClusterListenOptions {
  if (o === null || typeof o !== 'object') throw invalidArgType('listen', 'of type object', o);
  const opts = o as ClusterListenOptions;
  const kinds = [opts.port !== undefined, opts.path !== undefined, opts.fd !== undefined].filter(Boolean).length;
  if (kinds !== 1) throw invalidArgValue('listen', 'must have exactly one of port, path and fd', o);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === '')) {
    throw invalidArgType('listen.name', 'a non-empty string', opts.name);
  }
  if (opts.port !== undefined && (typeof opts.port !== 'number' || !Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)) {
    throw outOfRange('listen.port', 'an integer from 0 to 65535', opts.port);
  }
  if (opts.host !== undefined && typeof opts.host !== 'string') throw invalidArgType('listen.host', 'of type string', opts.host);
  if (opts.path !== undefined && typeof opts.path !== 'string') throw invalidArgType('listen.path', 'of type string', opts.path);
  if (opts.fd !== undefined) checkFdNumber(opts.fd, 'listen.fd');
  const backlog = opts.backlog ?? 511;
  if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 0 || backlog > 65535) {
    throw outOfRange('listen.backlog', 'an integer from 0 to 65535', backlog);
  }
  const mode = opts.mode ?? 0o600;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw outOfRange('listen.mode', 'an integer from 0 to 0o7777', mode);
  }
  if (opts.path !== undefined) encodeAddress({ path: opts.path }); // throws on a bad path before anything is made
  return opts;
}

function formatIp(family: number, bytes: Uint8Array): string {
  if (family === 4) return Array.from(bytes.subarray(0, 4)).join('.');
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
  // The longest run of zeros (two or more) becomes '::', as Node prints it.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}

const nameBuf = new Uint8Array(16);

/** The address of a TCP listener as Node's server.address() gives it, or null for other sockets. */
export function tcpAddress(fd: number): { address: string; family: string; port: number } | null {
  const r = native.inetSockName(fd, nameBuf);
  if (r < 0) return null;
  const family = r >> 16;
  return { address: formatIp(family, nameBuf), family: family === 4 ? 'IPv4' : 'IPv6', port: r & 0xffff };
}

function tcpListen(host: string, port: number, backlog: number, v6only: boolean, reuseport: boolean): number {
  const family = isIP(host);
  const fd = native.inetListen(family, ipBytes(host), port, backlog, (v6only ? V6ONLY : 0) | (reuseport ? REUSEPORT : 0));
  if (fd < 0) throw systemError(fd, 'listen', `${host}:${port}`);
  return fd;
}

/**
 * One more socket of a SO_REUSEPORT group, bound where the first one is: the
 * kernel now spreads the group's new connections over it too. Only sockets
 * of the same uid can join a group.
 */
export function openGroupSocket(g: ReuseGroup, backlog: number): number {
  return tcpListen(g.host, g.port, backlog, g.v6only, true);
}

/**
 * Open one listener. With `reuseport`, a TCP listener by port is the first
 * socket of a SO_REUSEPORT group (listeners by path or fd are not: AF_UNIX
 * has no such groups, and a socket bound without the option cannot join one).
 */
export async function openListener(o: ClusterListenOptions, reuseport = false): Promise<OpenListener> {
  const name = o.name ?? 'default';
  const backlog = o.backlog ?? 511;
  if (o.fd !== undefined) {
    const info = socketInfo(o.fd);
    if (!info.listening || info.type !== native.SOCK_STREAM) {
      throw new FdPassError(ErrorCodes.BAD_SOCKET, `fd ${o.fd} is not a listening stream socket`);
    }
    const r = native.setFlags(o.fd, 1, 1);
    if (r < 0) throw systemError(r, 'fcntl');
    return {
      name,
      fd: o.fd,
      address: info.domain === AF_INET || info.domain === AF_INET6 ? tcpAddress(o.fd) : (o.path ?? null),
      file: null,
      group: null,
      backlog,
    };
  }
  if (o.port !== undefined) {
    let fd: number;
    let host = o.host === undefined ? '::' : isIP(o.host) ? o.host : (await lookup(o.host)).address;
    let v6only = o.ipv6Only === true;
    try {
      fd = tcpListen(host, o.port, backlog, v6only, reuseport);
    } catch (err) {
      if (o.host !== undefined || (err as FdPassError).errno !== -EAFNOSUPPORT) throw err;
      // No IPv6 on this machine: the default host falls back to IPv4.
      host = '0.0.0.0';
      v6only = false;
      fd = tcpListen(host, o.port, backlog, v6only, reuseport);
    }
    const address = tcpAddress(fd);
    // The group's other sockets bind the port this one got (port 0 picks one).
    const group = reuseport && address ? { host, port: address.port, v6only } : null;
    return { name, fd, address, file: null, group, backlog };
  }
  const path = o.path as string;
  // The io core's listen: the mode before listen(2), a stale file replaced.
  const listening = listenSocket(encodeAddress({ path }), native.SOCK_STREAM, backlog, o.mode ?? 0o600);
  const file = { path: resolvePath(path), ...(listening.file as FileId) };
  return { name, fd: listening.fd, address: file.path, file, group: null, backlog };
}

export function unlinkIfOurs(file: { path: string; dev: number; ino: number }): void {
  unlinkIfSame(file.path, file);
}
