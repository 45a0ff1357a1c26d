// runc-compatible blocking helpers: the only functions that block the thread
// (in poll(2), when a non-blocking socket is not ready).
import { ErrorCodes, FdPassError, closedError, sendError } from '../base/errors.js';
import { FdLike, checkFdNumber, toFd } from '../base/fds.js';
import { waitWhileAgain } from '../io/blocking.js';
import { sendSome } from '../io/send.js';
import { native } from '../base/native.js';
import { readFdSync } from '../io/recv.js';
import { FdSocket, ReceivedFd, emptyDataError, encodeName, hasQueuedSends, socketRecvFdSync } from './socket.js';

const one = new Int32Array(1);

function socketFd(sock: unknown): number {
  if (sock instanceof FdSocket) {
    if (sock.closed) throw closedError();
    if (hasQueuedSends(sock)) {
      throw new FdPassError(ErrorCodes.BUSY, 'sendFdSync: the socket has asynchronous sends queued; await them first');
    }
    return sock.fd;
  }
  return checkFdNumber(sock, 'sock');
}

/**
 * runc's SendFd: send `name` as the payload with one fd, blocking until the
 * kernel has it all. `sock` is an FdSocket or a raw socket fd, blocking or not.
 */
export function sendFdSync(sock: FdSocket | number, name: string, fd: FdLike): void {
  const s = socketFd(sock);
  const bytes = encodeName(name);
  const f = toFd(fd);
  if (bytes.length === 0) throw emptyDataError();
  one[0] = f;
  const out = { data: bytes, offset: 0, fds: one };
  const r = waitWhileAgain(s, native.POLLOUT, () => sendSome(s, out));
  if (typeof r !== 'number') throw r;
  if (r < 0) throw sendError(r, out.fds !== null);
}

/**
 * runc's RecvFd: receive one name (< 4096 bytes) with exactly one fd, blocking
 * until it arrives. Every fd that arrived is closed before an error is thrown.
 */
export function recvFdSync(sock: FdSocket | number): ReceivedFd {
  if (sock instanceof FdSocket) return socketRecvFdSync(sock);
  const out = readFdSync(checkFdNumber(sock, 'sock'));
  if (out instanceof Error) throw out;
  return out;
}
