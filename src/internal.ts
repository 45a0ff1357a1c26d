// What protocol modules (src/runc, src/handoff, src/systemd, src/usocket) may
// use of the library beyond its public API, in one place. Nothing here is
// exported by the package.
import type { Kept } from './io/owned.js';
import { socketInternals, type FdSocket, type ReceivedFd, type ReceivedMessage, type RecvFdOptions, type RecvOptions } from './socket.js';

export { Kept, discardFds } from './io/owned.js';

/** sock.recv(), the message's fds still in the library's care until handed out. */
export function recvKept(sock: FdSocket, options?: RecvOptions): Promise<Kept<ReceivedMessage> | null> {
  return socketInternals.recvKept(sock, options);
}

/** sock.recvFd(), the fd still in the library's care until handed out. */
export function recvFdKept(sock: FdSocket, options?: RecvFdOptions): Promise<Kept<ReceivedFd>> {
  return socketInternals.recvFdKept(sock, options);
}
