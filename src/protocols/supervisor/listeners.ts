// The listeners a supervisor owns: TCP ports and Unix socket paths, opened
// once and kept for the supervisor's whole life. Children get copies (fds 3..
// in socket activation); while none accepts, connections wait in the backlog.
import { isIP } from 'node:net';
import {
  encodeAddress,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
  listenSocket,
  unlinkIfSame,
  type FileId,
  native,
  ipBytes,
} from '../internal.js';

/** A listener to open: a TCP port (on `host`, default every address) or a Unix socket path. */
export type ListenerSpec =
  { port: number; host?: string; name?: string; backlog?: number } | { path: string; mode?: number; name?: string; backlog?: number };

/** A listener the supervisor holds: its fd (the supervisor's), its name in LISTEN_FDNAMES, where it listens. */
export interface OpenListener {
  readonly fd: number;
  readonly name: string;
  /** `127.0.0.1:8080`, `[::]:8080` or `unix:/run/app.sock`, with the port the kernel chose for port 0. */
  readonly address: string;
  /** The TCP port (the one chosen for port 0), or undefined for a Unix socket. */
  readonly port: number | undefined;
  /** The socket file, unlinked on close if it is still ours. */
  readonly file: { path: string; id: FileId } | null;
}

const DEFAULT_BACKLOG = 511;

/** sd_notify's rules for a name (FDNAME=, FileDescriptorName=): 1 to 255 printable ASCII, no ':'. */
export const FD_NAME = /^[\x21-\x39\x3b-\x7e]{1,255}$/;

/**
 * Parse a command-line listener: `8080`, `127.0.0.1:8080`, `[::1]:8080`,
 * `unix:/run/app.sock` or `unix:/run/app.sock,mode=0660`, each optionally
 * followed by `=NAME` (its name in LISTEN_FDNAMES).
 */
export function parseListenerSpec(text: string): ListenerSpec {
  if (typeof text !== 'string') throw invalidArgType('spec', 'of type string', text);
  let spec = text;
  let name: string | undefined;
  const eq = spec.lastIndexOf('=');
  if (eq > 0 && !spec.slice(0, eq).endsWith(',mode')) {
    name = spec.slice(eq + 1);
    spec = spec.slice(0, eq);
    if (!FD_NAME.test(name)) throw invalidArgValue('name', 'must be 1 to 255 printable ASCII characters without spaces or ":"', name);
  }
  const named = name !== undefined ? { name } : {};
  if (spec.startsWith('unix:')) {
    let path = spec.slice(5);
    let mode: number | undefined;
    const m = /,mode=([0-7]{3,4})$/.exec(path);
    if (m) {
      mode = parseInt(m[1]!, 8);
      path = path.slice(0, m.index);
    }
    if (!path.startsWith('/')) throw invalidArgValue('spec', 'needs an absolute path after "unix:"', text);
    return { path, ...(mode !== undefined ? { mode } : {}), ...named };
  }
  const m = /^(?:(\[[0-9a-fA-F:.%\w]+\]|[0-9.]+|\*):)?([0-9]{1,5})$/.exec(spec);
  if (!m) throw invalidArgValue('spec', 'must be PORT, HOST:PORT, [IPV6]:PORT or unix:PATH', text);
  const port = Number(m[2]);
  if (port > 65535) throw outOfRange('port', 'an integer from 0 to 65535', port);
  let host: string | undefined = m[1];
  if (host === '*') host = undefined;
  else if (host?.startsWith('[')) host = host.slice(1, -1);
  if (host !== undefined && isIP(host) === 0) throw invalidArgValue('spec', 'must name an IP address', text);
  return { port, ...(host !== undefined ? { host } : {}), ...named };
}

const nameBuf = new Uint8Array(16);

/** Check a spec before anything is opened. */
export function checkListenerSpec(spec: unknown, i: number): ListenerSpec {
  if (typeof spec === 'string') return parseListenerSpec(spec);
  if (spec === null || typeof spec !== 'object') throw invalidArgType(`listeners[${i}]`, 'a string or an object', spec);
  const s = spec as Record<string, unknown>;
  if (s.name !== undefined && (typeof s.name !== 'string' || !FD_NAME.test(s.name))) {
    throw invalidArgValue(`listeners[${i}].name`, 'must be 1 to 255 printable ASCII characters without spaces or ":"', s.name);
  }
  if (s.backlog !== undefined && (typeof s.backlog !== 'number' || !Number.isInteger(s.backlog) || s.backlog < 0 || s.backlog > 65535)) {
    throw outOfRange(`listeners[${i}].backlog`, 'an integer from 0 to 65535', s.backlog);
  }
  if ((s.port === undefined) === (s.path === undefined))
    throw invalidArgValue(`listeners[${i}]`, 'must have exactly one of port and path', spec);
  if (s.port !== undefined) {
    if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 0 || s.port > 65535) {
      throw outOfRange(`listeners[${i}].port`, 'an integer from 0 to 65535', s.port);
    }
    if (s.host !== undefined && (typeof s.host !== 'string' || isIP(s.host) === 0)) {
      throw invalidArgValue(`listeners[${i}].host`, 'must be an IP address', s.host);
    }
  } else {
    if (typeof s.path !== 'string' || !s.path.startsWith('/'))
      throw invalidArgValue(`listeners[${i}].path`, 'must be an absolute path', s.path);
    encodeAddress({ path: s.path });
    if (s.mode !== undefined && (typeof s.mode !== 'number' || !Number.isInteger(s.mode) || s.mode < 0 || s.mode > 0o7777)) {
      throw outOfRange(`listeners[${i}].mode`, 'an integer from 0 to 0o7777', s.mode);
    }
  }
  return spec as ListenerSpec;
}

/** Open one listener; the fd is close-on-exec and non-blocking, the caller's. */
export function openListener(spec: ListenerSpec): OpenListener {
  const backlog = spec.backlog ?? DEFAULT_BACKLOG;
  const name = spec.name ?? 'unknown';
  if ('path' in spec) {
    const address = encodeAddress({ path: spec.path });
    // 0666 by default, like a socket unit's SocketMode=: who may connect is
    // the directory's business.
    const { fd, file } = listenSocket(address, native.SOCK_STREAM, backlog, spec.mode ?? 0o666);
    return { fd, name, address: `unix:${spec.path}`, port: undefined, file: file ? { path: spec.path, id: file } : null };
  }
  // Every address: IPv6 and IPv4 on one socket ([::], v6only off), as Node does.
  const host = spec.host ?? '::';
  const family = isIP(host);
  const fd = native.inetListen(family, ipBytes(host), spec.port, backlog, 0);
  if (fd < 0) {
    const err = systemError(fd, 'listen', `${family === 6 ? `[${host}]` : host}:${spec.port}`);
    if (err.code === 'EADDRINUSE') {
      err.message = `port ${spec.port} is in use on ${host === '::' ? 'every address' : host} (${err.message})`;
    }
    throw err;
  }
  const r = native.inetSockName(fd, nameBuf);
  const port = r < 0 ? spec.port : r & 0xffff;
  return { fd, name, address: `${family === 6 ? `[${host}]` : host}:${port}`, port, file: null };
}

/** Open every listener, or none: on failure those opened are closed before the error surfaces. */
export function openListeners(specs: readonly ListenerSpec[]): OpenListener[] {
  const open: OpenListener[] = [];
  try {
    for (const spec of specs) open.push(openListener(spec));
  } catch (err) {
    closeListeners(open);
    throw err;
  }
  return open;
}

/** Close listeners and unlink their socket files (only if still theirs). */
export function closeListeners(listeners: readonly OpenListener[]): void {
  for (const l of listeners) {
    native.close(l.fd);
    if (l.file) unlinkIfSame(l.file.path, l.file.id);
  }
}
