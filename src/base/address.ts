// Socket addresses: a path (sun_path, 107 bytes) or an abstract name; and
// an IP address as the bytes inetListen takes.
import { isIP } from 'node:net';
import { ErrorCodes, invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { native } from './native.js';

export type SocketType = 'stream' | 'seqpacket' | 'dgram';

/** Where a socket listens or connects: a filesystem path or an abstract name. */
export interface AddressOptions {
  /** A filesystem path for the socket file. */
  path?: string;
  /** An abstract socket name (no leading NUL): no file, no permissions. */
  abstract?: string;
  /** Socket type; default 'stream'. */
  type?: SocketType;
}

export const SUN_PATH_MAX = 107;

export function socketTypeNumber(type: unknown): number {
  if (type === undefined || type === 'stream') return native.SOCK_STREAM;
  if (type === 'seqpacket') return native.SOCK_SEQPACKET;
  if (type === 'dgram') return native.SOCK_DGRAM;
  throw invalidArgValue('type', "must be 'stream', 'seqpacket' or 'dgram'", type);
}

export function socketTypeName(n: number): SocketType {
  if (n === native.SOCK_SEQPACKET) return 'seqpacket';
  if (n === native.SOCK_DGRAM) return 'dgram';
  return 'stream';
}

export interface ResolvedAddress {
  bytes: Uint8Array;
  /** The path, or '@name' for an abstract name: for messages. */
  display: string;
  path?: string;
  abstract?: string;
}

/** What a too-long name was: its length in bytes and its start. */
function tooLong(name: string, bytes: number): string {
  return `${bytes} bytes (${JSON.stringify(name.length > 40 ? `${name.slice(0, 37)}...` : name)})`;
}

/** Encode a path or an abstract name for the addon, checking its length. */
export function encodeAddress(options: AddressOptions): ResolvedAddress {
  const { path, abstract } = options;
  if (path !== undefined && abstract !== undefined) {
    throw invalidArgValue('options', 'must have path or abstract, not both', options);
  }
  if (path !== undefined) {
    if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path);
    if (path.length === 0) throw invalidArgValue('path', 'must not be empty', path);
    if (path.includes('\0')) throw invalidArgValue('path', 'must not contain NUL bytes', path);
    const bytes = Buffer.from(path, 'utf8');
    if (bytes.length > SUN_PATH_MAX) {
      throw outOfRange('path', `at most ${SUN_PATH_MAX} bytes (sun_path)`, path, ErrorCodes.PATH_TOO_LONG, tooLong(path, bytes.length));
    }
    return { bytes, display: path, path };
  }
  if (abstract !== undefined) {
    if (typeof abstract !== 'string') throw invalidArgType('abstract', 'of type string', abstract);
    if (abstract.length === 0) throw invalidArgValue('abstract', 'must not be empty', abstract);
    if (abstract.includes('\0')) throw invalidArgValue('abstract', 'must not contain NUL bytes', abstract);
    const name = Buffer.from(abstract, 'utf8');
    if (name.length > SUN_PATH_MAX) {
      throw outOfRange('abstract', `at most ${SUN_PATH_MAX} bytes`, abstract, ErrorCodes.PATH_TOO_LONG, tooLong(abstract, name.length));
    }
    const bytes = new Uint8Array(name.length + 1);
    bytes.set(name, 1);
    return { bytes, display: `@${abstract}`, abstract };
  }
  throw invalidArgValue('options', 'must have a path or an abstract name', options);
}

/** Accept `path` or `{ path?, abstract?, type? }`. */
export function addressOptions<T extends AddressOptions>(arg: string | T, fn: string): T {
  if (typeof arg === 'string') return { path: arg } as T;
  if (arg === null || typeof arg !== 'object') throw invalidArgType(fn, 'a path string or an options object', arg);
  return arg;
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address in network order, for native.inetListen. */
export function ipBytes(ip: string): Uint8Array {
  if (isIP(ip) === 4) return Uint8Array.from(ip.split('.').map(Number));
  // IPv6: a trailing dotted IPv4 part becomes two words, then '::' expands.
  let text = ip.split('%')[0]!;
  if (text.includes('.')) {
    const at = text.lastIndexOf(':') + 1;
    const v4 = ipBytes(text.slice(at));
    text = `${text.slice(0, at)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const [head, rest] = text.split('::') as [string, string | undefined];
  const a = parse(head);
  const b = rest === undefined ? [] : parse(rest);
  const words = rest === undefined ? a : [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = (words[i]! >> 8) & 0xff;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  return out;
}
