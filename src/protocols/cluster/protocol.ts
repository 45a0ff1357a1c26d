// The channel between an fdpass/cluster primary and a worker: one
// SOCK_SEQPACKET connection per worker process (message boundaries kept by
// the kernel, so no framing). The first byte of a message is its kind.
//
// worker -> primary
//   'S' JSON {name}              serve: a server of this worker takes `name`
//   'C' JSON {index}             closed: stop sending listener `index`
//   'A' u32 count, u32 load, u32 nrefused, u32 refused[nrefused]
//                                the oldest `count` fds sent are now the
//                                worker's, except the refused positions (the
//                                primary keeps and re-sends those); `load` is
//                                the worker's open connections; count 0 is a
//                                load report (after closes: at once if the
//                                'L' answer said eager; every 100 ms at
//                                most, if it changed, from a worker that
//                                listens on a group socket).
//                                One 'A' covers every 'F' of a loop turn.
// primary -> worker
//   'L' JSON {name, index, address, eager, backlog?} | {name, error}
//                                answer to 'S'; with `backlog` (schedule
//                                'reuseport'), a listening socket in
//                                SCM_RIGHTS for the worker to listen on
//   'F' u8 index[n]              n connection fds in SCM_RIGHTS, the listener
//                                index of each
//   'D'                          drain (a rolling reload replaced this
//                                worker): close every server, answer each
//                                HTTP request from now on with "Connection:
//                                close", and close the channel once every
//                                connection ended (the primary then stops
//                                the process)
import { FdPassError, ErrorCodes } from '../internal.js';

export const SERVE = 0x53; // 'S'
export const CLOSED = 0x43; // 'C'
export const ACK = 0x41; // 'A'
export const LISTENING = 0x4c; // 'L'
export const FDS = 0x46; // 'F'
export const DRAIN = 0x44; // 'D'

/** The environment variable that tells a worker where its primary is. */
export const ENV_NAME = 'FDPASS_CLUSTER';

/** What server.address() answers in a worker. */
export type ListenerAddress = { address: string; family: string; port: number } | string | null;

export interface ListeningReply {
  name: string;
  index?: number;
  address?: ListenerAddress;
  /** Report load changes at once (the primary schedules by load). */
  eager?: boolean;
  /** With a listening socket attached: listen on it with this backlog. */
  backlog?: number;
  error?: string;
}

export function encodeJson(kind: number, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const out = Buffer.allocUnsafe(json.length + 1);
  out[0] = kind;
  json.copy(out, 1);
  return out;
}

export function decodeJson<T>(data: Buffer): T {
  try {
    return JSON.parse(data.toString('utf8', 1)) as T;
  } catch {
    throw new FdPassError(ErrorCodes.PROTOCOL, 'fdpass/cluster: a control message is not JSON');
  }
}

export function encodeAck(count: number, load: number, refused: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(13 + 4 * refused.length);
  out[0] = ACK;
  out.writeUInt32LE(count, 1);
  out.writeUInt32LE(load, 5);
  out.writeUInt32LE(refused.length, 9);
  for (let i = 0; i < refused.length; i++) out.writeUInt32LE(refused[i]!, 13 + 4 * i);
  return out;
}

export interface Ack {
  count: number;
  load: number;
  refused: number[];
}

export function decodeAck(data: Buffer): Ack {
  if (data.length < 13) throw new FdPassError(ErrorCodes.PROTOCOL, 'fdpass/cluster: short acknowledgement');
  const n = data.readUInt32LE(9);
  if (data.length !== 13 + 4 * n) throw new FdPassError(ErrorCodes.PROTOCOL, 'fdpass/cluster: bad acknowledgement length');
  const refused: number[] = [];
  for (let i = 0; i < n; i++) refused.push(data.readUInt32LE(13 + 4 * i));
  return { count: data.readUInt32LE(1), load: data.readUInt32LE(5), refused };
}
