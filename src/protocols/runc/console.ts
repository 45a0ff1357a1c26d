// runc's console socket (`runc run|create --console-socket PATH`): runc
// connects and sends one message, the pty master of the container's terminal
// with an opaque name ('/dev/ptmx' in runc 1.1, '/dev/pts/ptmx' later,
// 'orphan-pts-master' on a CRIU restore).
import { toFd, type FdLike, Kept, recvFdKept, encodeName, type PeerCredentials } from '../internal.js';
import { withTarget, type RuncTarget } from './connect.js';
import { listenRunc, type RuncListener, type RuncListenOptions } from './listener.js';

/** A console from runc: the pty master of a container's terminal (yours to close). */
export interface ReceivedConsole {
  /** The name runc sent, as it sent it. */
  name: string;
  /** The pty master. Wrap it in a PtyStream to read and write it. */
  fd: number;
  peer: PeerCredentials;
}

export type ConsoleListener = RuncListener<ReceivedConsole>;

/**
 * Listen for runc's console socket. Each connection delivers one
 * ReceivedConsole; bad connections are reported as 'error' events (their fds
 * closed) and the listener goes on. close() unlinks the socket file.
 */
export function listenConsoleSocket(path: string, options?: RuncListenOptions): Promise<ConsoleListener> {
  return listenRunc<ReceivedConsole>(path, options, async (sock, peer, signal) => {
    const { name, fd } = (await recvFdKept(sock, { signal })).value;
    return new Kept({ name, fd, peer }, [fd]);
  });
}

/**
 * Send a pty master the way runc does: `name` as the payload, one fd. With a
 * path it connects, sends and closes; an FdSocket stays open. The caller
 * still owns (and closes) ptyMaster.
 */
export async function sendConsole(target: RuncTarget, name: string, ptyMaster: FdLike): Promise<void> {
  encodeName(name);
  const fd = toFd(ptyMaster, 'ptyMaster');
  await withTarget(target, (sock) => sock.sendFd(name, fd));
}
