// runc's pidfd socket (`--pidfd-socket PATH`, runc 1.2 and later): the
// container's process sends one message, its kind ('standard' for run/create,
// 'setns' for exec) as the payload with one pidfd.
import { ErrorCodes, FdPassError, invalidArgValue, toFd, type FdLike, Kept, recvFdKept, type PeerCredentials } from '../internal.js';
import { withTarget, type RuncTarget } from './connect.js';
import { listenRunc, type RuncListener, type RuncListenOptions } from './listener.js';

/** 'standard': the init process of run/create; 'setns': a process of exec. */
export type PidfdKind = 'standard' | 'setns';

/** A pidfd from runc (yours to close). */
export interface ReceivedPidfd {
  kind: PidfdKind;
  pidfd: number;
  peer: PeerCredentials;
}

export type PidfdListener = RuncListener<ReceivedPidfd>;

const KINDS: readonly string[] = ['standard', 'setns'];

/**
 * Listen for runc's pidfd socket. Each connection delivers one ReceivedPidfd;
 * an unknown kind gives ERR_FDPASS_BAD_MESSAGE (the fd closed), and the
 * listener goes on.
 */
export function listenPidfdSocket(path: string, options?: RuncListenOptions): Promise<PidfdListener> {
  return listenRunc<ReceivedPidfd>(path, options, async (sock, peer, signal) => {
    const received = await recvFdKept(sock, { signal });
    const { name, fd } = received.value;
    if (!KINDS.includes(name)) {
      received.discard();
      throw new FdPassError(
        ErrorCodes.BAD_MESSAGE,
        `pidfd socket: unknown kind ${JSON.stringify(name.slice(0, 64))} (expected "standard" or "setns"); its fd was closed`,
      );
    }
    return new Kept({ kind: name as PidfdKind, pidfd: fd, peer }, [fd]);
  });
}

/** Send a pidfd the way runc does. The caller still owns (and closes) pidfd. */
export async function sendPidfd(target: RuncTarget, kind: PidfdKind, pidfd: FdLike): Promise<void> {
  if (!KINDS.includes(kind)) throw invalidArgValue('kind', "must be 'standard' or 'setns'", kind);
  const fd = toFd(pidfd, 'pidfd');
  await withTarget(target, (sock) => sock.sendFd(kind, fd));
}
