// runc's pidfd socket (`--pidfd-socket PATH`, runc 1.2 and later): the
// container's process sends one message, its kind ('standard' for run/create,
// 'setns' for exec) as the payload with one pidfd.
//
// crun (`run.oci.pidfd_receiver` annotation, crun 1.8.1 here) sends the
// container's init process the same way with payload " " (one space): the
// kind runc calls 'standard'. It has no exec counterpart. The payload as sent
// is kept in `name`, so the two can be told apart.
import { ErrorCodes, FdPassError, invalidArgValue, toFd, type FdLike, Kept, recvFdKept, type PeerCredentials } from '../internal.js';
import { withTarget, type RuncTarget } from './connect.js';
import { listenRunc, type RuncListener, type RuncListenOptions } from './listener.js';

/** 'standard': the init process of run/create; 'setns': a process of exec. */
export type PidfdKind = 'standard' | 'setns';

/** A pidfd from runc or crun (yours to close). */
export interface ReceivedPidfd {
  /** 'standard' for runc's 'standard' and crun's " ", 'setns' for runc's 'setns'. */
  kind: PidfdKind;
  /** The payload as sent: 'standard', 'setns', or crun's ' '. */
  name: string;
  pidfd: number;
  peer: PeerCredentials;
}

export type PidfdListener = RuncListener<ReceivedPidfd>;

const KINDS: readonly string[] = ['standard', 'setns'];

/** What each payload means: runc's names, and crun's one space for its init process. */
const KIND_OF: ReadonlyMap<string, PidfdKind> = new Map([
  ['standard', 'standard'],
  ['setns', 'setns'],
  [' ', 'standard'],
]);

/**
 * Listen for runc's pidfd socket (or crun's `run.oci.pidfd_receiver`). Each
 * connection delivers one ReceivedPidfd; an unknown kind gives
 * ERR_FDPASS_BAD_MESSAGE (the fd closed), and the listener goes on.
 */
export function listenPidfdSocket(path: string, options?: RuncListenOptions): Promise<PidfdListener> {
  return listenRunc<ReceivedPidfd>(path, options, async (sock, peer, signal) => {
    const received = await recvFdKept(sock, { signal });
    const { name, fd } = received.value;
    const kind = KIND_OF.get(name);
    if (kind === undefined) {
      received.discard();
      throw new FdPassError(
        ErrorCodes.BAD_MESSAGE,
        `pidfd socket: unknown kind ${JSON.stringify(name.slice(0, 64))} (expected "standard", "setns" or crun's " "); its fd was closed`,
      );
    }
    return new Kept({ kind, name, pidfd: fd, peer }, [fd]);
  });
}

/** Send a pidfd the way runc does. The caller still owns (and closes) pidfd. */
export async function sendPidfd(target: RuncTarget, kind: PidfdKind, pidfd: FdLike): Promise<void> {
  if (!KINDS.includes(kind)) throw invalidArgValue('kind', "must be 'standard' or 'setns'", kind);
  const fd = toFd(pidfd, 'pidfd');
  await withTarget(target, (sock) => sock.sendFd(kind, fd));
}
