// The new generation's side: connect to the running one, take its
// listeners, and later tell it we are ready (it then drains and exits).
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, resolve as resolvePath } from 'node:path';
import { ErrorCodes, FdPassError, abortError, Kept, FdSocket, type PeerCredentials } from '../internal.js';
import { PROTOCOL_VERSION, handoffError, messages, receive, send } from './protocol.js';

/** What a successor took: the control connection, and the listeners by name (in the library's care until taken). */
export interface Taken {
  upstream: FdSocket;
  received: Map<string, Kept<number>>;
}

/**
 * Connect to the running generation at `path` and take its listeners. Null
 * when nobody is there (no file, or a stale one): a first start.
 */
export async function takeOver(
  path: string,
  allow: (peer: PeerCredentials) => boolean,
  timeout: number,
  signal: AbortSignal | undefined,
): Promise<Taken | null> {
  let sock: FdSocket;
  try {
    sock = await FdSocket.connect({ path, type: 'seqpacket', ...(signal ? { signal } : {}) });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      checkControlFolder(path);
      return null;
    }
    throw err;
  }
  try {
    return { upstream: sock, received: await take(sock, path, allow, timeout, signal) };
  } catch (err) {
    await sock.close();
    // The peer closed on us (refused by its allow): EPIPE or ECONNRESET.
    const code = (err as { code?: string }).code;
    if (code === 'EPIPE' || code === 'ECONNRESET') {
      throw handoffError(ErrorCodes.HANDOFF_REFUSED, `the process at ${path} closed the connection (refused by its allow?)`, err);
    }
    throw err;
  }
}

/**
 * A first start binds the control socket in the folder of `path` (at ready()):
 * fail now, naming that folder, when it is missing or not writable.
 */
function checkControlFolder(path: string): void {
  const dir = dirname(resolvePath(path));
  const fail = (code: 'ENOENT' | 'ENOTDIR' | 'EACCES', why: string): never => {
    throw new FdPassError(code, `Handoff.start: the folder ${dir} ${why} (the control socket is ${path})`, {
      errno: -osConstants.errno[code],
      syscall: code === 'EACCES' ? 'access' : 'stat',
      path: dir,
    });
  };
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') return fail('ENOENT', 'does not exist');
    if (code === 'ENOTDIR') return fail('ENOTDIR', 'is not a folder');
    throw err;
  }
  if (!isDir) fail('ENOTDIR', 'is not a folder');
  try {
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch {
    fail('EACCES', 'is not writable by this process');
  }
}

async function take(
  sock: FdSocket,
  path: string,
  allow: (peer: PeerCredentials) => boolean,
  timeout: number,
  signal: AbortSignal | undefined,
): Promise<Map<string, Kept<number>>> {
  const peer = sock.peer;
  if (!allow(peer)) {
    throw handoffError(ErrorCodes.HANDOFF_REFUSED, `the process at ${path} (pid ${peer.pid}, uid ${peer.uid}) is not allowed`);
  }
  await send(sock, messages.take());
  let reply;
  try {
    reply = await receive(sock, timeout, signal);
  } catch (err) {
    if (signal?.aborted) throw abortError(signal);
    if ((err as Error).name === 'AbortError') {
      throw handoffError(ErrorCodes.HANDOFF_ABORTED, `no offer from pid ${peer.pid} within ${timeout} ms`);
    }
    throw err;
  }
  if (reply === null) {
    throw handoffError(ErrorCodes.HANDOFF_REFUSED, `the process at ${path} closed the connection without an offer (refused by its allow?)`);
  }
  const { message, fds } = reply;
  if (message?.op === 'busy') {
    fds.discard();
    throw handoffError(ErrorCodes.HANDOFF_BUSY, `pid ${peer.pid} is already handing off to another process`);
  }
  const names = message?.names;
  const list = fds.value;
  if (
    message?.op !== 'offer' ||
    message.version !== PROTOCOL_VERSION ||
    !Array.isArray(names) ||
    !names.every((n) => typeof n === 'string') ||
    new Set(names).size !== names.length ||
    names.length !== list.length
  ) {
    fds.discard();
    throw handoffError(ErrorCodes.PROTOCOL, `unexpected answer from pid ${peer.pid}: ${JSON.stringify(message)} with ${list.length} fd(s)`);
  }
  const received = new Map<string, Kept<number>>();
  names.forEach((name: string, i) => received.set(name, new Kept(list[i]!, [list[i]!])));
  return received;
}

/**
 * Tell the predecessor we serve; it answers 'draining' (or is gone already:
 * fine) or 'abort' (it gave up waiting: ERR_FDPASS_HANDOFF_ABORTED).
 * Closes the connection.
 */
export async function announceReady(up: FdSocket, timeout: number): Promise<void> {
  try {
    await send(up, messages.ready());
    const reply = await receive(up, timeout);
    reply?.fds.discard();
    if (reply?.message?.op === 'abort') {
      throw handoffError(ErrorCodes.HANDOFF_ABORTED, `the predecessor gave up: ${String(reply.message.reason)}`);
    }
    // 'draining', or end of file (the predecessor is gone already): both fine.
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'EPIPE' && code !== 'ECONNRESET' && (err as Error).name !== 'AbortError') throw err;
  } finally {
    await up.close();
  }
}
