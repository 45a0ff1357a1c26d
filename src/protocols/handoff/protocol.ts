// The handoff protocol, defined once: the control socket is a Unix seqpacket
// socket, one JSON message per packet.
//
//   new -> old  {"op":"take","version":1,"pid":N}
//   old -> new  {"op":"offer","version":1,"pid":N,"names":[...]}  + one fd per name
//            or {"op":"busy"} (another handoff is in progress)
//   new -> old  {"op":"ready"}          (after the new process took the control path)
//   old -> new  {"op":"draining"}        then the old process closes the connection
//   old -> new  {"op":"abort","reason"}  (the old process gave up waiting)
import { FdPassError, Kept, recvKept, type FdSocket } from '../internal.js';

export const PROTOCOL_VERSION = 1;

export type Message =
  | { op: 'take'; version: number; pid: number }
  | { op: 'offer'; version: number; pid: number; names: string[] }
  | { op: 'busy' }
  | { op: 'ready' }
  | { op: 'draining' }
  | { op: 'abort'; reason: string };

/** The messages, as each side sends them. */
export const messages = {
  take: (): Message => ({ op: 'take', version: PROTOCOL_VERSION, pid: process.pid }),
  offer: (names: string[]): Message => ({ op: 'offer', version: PROTOCOL_VERSION, pid: process.pid, names }),
  busy: (): Message => ({ op: 'busy' }),
  ready: (): Message => ({ op: 'ready' }),
  draining: (): Message => ({ op: 'draining' }),
  abort: (reason: string): Message => ({ op: 'abort', reason }),
};

/** Send one message, with fds (the offer's listeners). */
export function send(sock: FdSocket, message: Message, fds?: number[]): Promise<void> {
  return sock.send(JSON.stringify(message), fds);
}

/** A message as received: `op` checked to be a string, the rest unchecked. */
export interface Incoming {
  op: string;
  [key: string]: unknown;
}

/** What arrived: the message (null when it is no JSON object with an op) and its fds, still in the library's care. */
export interface Received {
  message: Incoming | null;
  fds: Kept<number[]>;
}

function parse(data: Buffer): Incoming | null {
  try {
    const v: unknown = JSON.parse(data.toString('utf8'));
    if (v !== null && typeof v === 'object' && typeof (v as Incoming).op === 'string') return v as Incoming;
  } catch {
    // not JSON
  }
  return null;
}

/** The next message within `ms` (an AbortError after), or null at end of file. */
export async function receive(sock: FdSocket, ms: number, signal?: AbortSignal): Promise<Received | null> {
  const timeout = AbortSignal.timeout(ms);
  const m = await recvKept(sock, { signal: signal ? AbortSignal.any([timeout, signal]) : timeout });
  if (m === null) return null;
  return { message: parse(m.value.data), fds: new Kept(m.value.fds, m.value.fds) };
}

/** A handoff error: `handoff: ` and the message. */
export function handoffError(code: string, message: string, cause?: unknown): FdPassError {
  return new FdPassError(code, `handoff: ${message}`, cause === undefined ? {} : { cause });
}
