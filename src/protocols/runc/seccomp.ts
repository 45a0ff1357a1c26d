// runc's seccomp notify listener (`linux.seccomp.listenerPath`): runc
// connects and sends the OCI ContainerProcessState as JSON with the fds it
// names (the seccomp notify fd) on its first bytes. runc 1.1.5 does not close
// the connection while the container runs, so the state is complete when its
// JSON is, not at end of file (waiting for that deadlocks as soon as a
// notified syscall happens during runc's start-up). The JSON can exceed 4096
// bytes (annotations): it is read until its top-level object closes, bounded
// by maxStateBytes.
import {
  ErrorCodes,
  FdPassError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  toFd,
  type FdLike,
  Kept,
  discardFds,
  recvKept,
  type PeerCredentials,
} from '../internal.js';
import { withTarget, type RuncTarget } from './connect.js';
import { listenRunc, type RuncListener, type RuncListenOptions } from './listener.js';
import { toContainerProcessState, type ContainerProcessState } from './state.js';

/** What a seccomp agent receives: the state and its fds by name (yours to close). */
export interface ReceivedContainerProcessState {
  state: ContainerProcessState;
  /** The fds, by the names in state.fds: `fds.seccompFd` is the seccomp notify fd. */
  fds: Record<string, number>;
  peer: PeerCredentials;
}

export interface SeccompAgentOptions extends RuncListenOptions {
  /** Largest state accepted, in bytes; default 1 MiB. */
  maxStateBytes?: number;
}

export type SeccompAgentListener = RuncListener<ReceivedContainerProcessState>;

const DEFAULT_MAX_STATE = 1 << 20;
const CHUNK = 65536;

/**
 * Listen as a seccomp agent. Each connection delivers one
 * ReceivedContainerProcessState. Malformed JSON or state
 * (ERR_FDPASS_BAD_MESSAGE), fds that differ from state.fds
 * (ERR_FDPASS_FD_COUNT_MISMATCH), a state over maxStateBytes
 * (ERR_FDPASS_MESSAGE_TOO_LARGE) or a peer that closes without a message
 * (ERR_FDPASS_EOF) are 'error' events; the fds that came are closed and the
 * listener goes on.
 */
export function listenSeccompAgent(path: string, options?: SeccompAgentOptions): Promise<SeccompAgentListener> {
  const maxStateBytes = options?.maxStateBytes ?? DEFAULT_MAX_STATE;
  if (typeof maxStateBytes !== 'number') throw invalidArgType('options.maxStateBytes', 'of type number', maxStateBytes);
  if (!Number.isInteger(maxStateBytes) || maxStateBytes < 1 || maxStateBytes > 16 << 20) {
    throw outOfRange('options.maxStateBytes', 'an integer from 1 to 16 MiB', maxStateBytes);
  }
  return listenRunc<ReceivedContainerProcessState>(path, options, async (sock, peer, signal) => {
    const chunks: Buffer[] = [];
    const fds: number[] = [];
    const end = new JsonEnd();
    let size = 0;
    try {
      for (;;) {
        const kept = await recvKept(sock, { signal, maxBytes: CHUNK });
        if (kept === null) break;
        const m = kept.value;
        for (const fd of m.fds) fds.push(fd);
        const at = end.feed(m.data);
        size += m.data.length;
        if (at === BAD) throw new FdPassError(ErrorCodes.BAD_MESSAGE, 'seccomp agent: the state is not a JSON object');
        if (size > maxStateBytes && (at < 0 || size - m.data.length + at > maxStateBytes)) {
          throw new FdPassError(
            ErrorCodes.MESSAGE_TOO_LARGE,
            `seccomp agent: state longer than ${maxStateBytes} bytes; its fds were closed`,
          );
        }
        chunks.push(m.data);
        if (at >= 0) {
          if (m.data.subarray(at).some((c) => !isSpace(c))) {
            throw new FdPassError(ErrorCodes.BAD_MESSAGE, 'seccomp agent: bytes after the state');
          }
          break;
        }
      }
      return new Kept(parseState(Buffer.concat(chunks, size), fds, peer), fds);
    } catch (err) {
      discardFds(fds);
      throw err;
    }
  });
}

const BAD = -2;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Finds where a JSON object ends, chunk by chunk, without parsing it: the
 * depth of braces and brackets outside strings. UTF-8 continuation bytes are
 * >= 0x80, so they never look like the ASCII it counts.
 */
class JsonEnd {
  #depth = 0;
  #inString = false;
  #escape = false;
  #started = false;

  /** The index just past the object's end in chunk, -1 if not there yet, BAD if it is no object. */
  feed(chunk: Uint8Array): number {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === 0x5c) this.#escape = true;
        else if (c === 0x22) this.#inString = false;
      } else if (!this.#started) {
        if (c === 0x7b) {
          this.#started = true;
          this.#depth = 1;
        } else if (!isSpace(c)) return BAD;
      } else if (c === 0x22) this.#inString = true;
      else if (c === 0x7b || c === 0x5b) this.#depth++;
      else if ((c === 0x7d || c === 0x5d) && --this.#depth === 0) return i + 1;
    }
    return -1;
  }
}

function parseState(data: Buffer, fds: number[], peer: PeerCredentials): ReceivedContainerProcessState {
  if (data.length === 0) {
    const what = fds.length > 0 ? `${fds.length} fd(s) without a state` : 'nothing';
    throw new FdPassError(fds.length > 0 ? ErrorCodes.BAD_MESSAGE : ErrorCodes.EOF, `seccomp agent: the peer sent ${what} before closing`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    throw new FdPassError(ErrorCodes.BAD_MESSAGE, `seccomp agent: the state is not JSON (${(err as Error).message})`);
  }
  const state = toContainerProcessState(json);
  if (state instanceof FdPassError) throw state;
  if (state.fds.length !== fds.length) {
    throw new FdPassError(
      ErrorCodes.FD_COUNT_MISMATCH,
      `seccomp agent: the state names ${state.fds.length} fd(s) but ${fds.length} arrived; they were closed`,
    );
  }
  return { state, fds: Object.fromEntries(state.fds.map((name, i) => [name, fds[i]!])), peer };
}

/**
 * Send a ContainerProcessState the way runc does: its JSON with the fds on
 * its first bytes, then end of file (a path is connected and closed; an
 * FdSocket is half-closed). `fds` are in the order of state.fds, or by name.
 * The caller still owns (and closes) the fds.
 */
export async function sendContainerProcessState(
  target: RuncTarget,
  state: ContainerProcessState,
  fds: readonly FdLike[] | Readonly<Record<string, FdLike>>,
): Promise<void> {
  const checked = toContainerProcessState(state);
  if (checked instanceof FdPassError) throw invalidArgValue('state', `is invalid (${checked.message})`, state);
  let list: FdLike[];
  if (Array.isArray(fds)) list = [...(fds as readonly FdLike[])];
  else if (fds !== null && typeof fds === 'object') {
    const byName = fds as Readonly<Record<string, FdLike>>;
    const missing = checked.fds.filter((n) => !Object.hasOwn(byName, n));
    if (missing.length > 0) throw invalidArgValue('fds', `has no fd named ${missing.join(', ')}`, fds);
    list = checked.fds.map((n) => byName[n]!);
  } else throw invalidArgType('fds', 'an array of fds or an object of fds by name', fds);
  if (list.length !== checked.fds.length) {
    throw outOfRange('fds.length', `${checked.fds.length} (the names in state.fds)`, list.length);
  }
  const numbers = list.map((f, i) => toFd(f, `fds[${i}]`));
  const json = JSON.stringify(checked);
  await withTarget(target, async (sock) => {
    await sock.send(json, numbers);
    await sock.end();
  });
}
