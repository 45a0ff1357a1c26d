/**
 * fdpass: pass open file descriptors between processes over Unix domain
 * sockets (SCM_RIGHTS), wire-compatible with runc's SendFd/RecvFd.
 * @packageDocumentation
 */
export { FdSocket } from './socket.js';
export type {
  BindOptions,
  ConnectOptions,
  FdSocketEvents,
  PeerCredentials,
  ReceivedFd,
  ReceivedMessage,
  RecvFdOptions,
  RecvOptions,
} from './socket.js';
export { FdServer } from './server.js';
export type { AcceptOptions, FdServerEvents, FromFdServerOptions, ListenOptions } from './server.js';
export { sendFdSync, recvFdSync } from './sync.js';
export { MAX_NAME_LEN } from './recv.js';
export { MAX_FDS, closeFds } from './fds.js';
export type { FdLike, HasFd } from './fds.js';
export { FdPassError, ErrorCodes } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { AddressOptions, SocketType } from './address.js';
export { socketFromFd, serverFromFd, readStreamFromFd, writeStreamFromFd } from './convert.js';
export type { StreamFromFdOptions } from './convert.js';
import type { StreamFromFdOptions } from './convert.js';
/**
 * @deprecated The options of readStreamFromFd and writeStreamFromFd are now
 * named StreamFromFdOptions; `FdStreamOptions` is FdStream's (fdpass/stream).
 */
export type FdStreamOptions = StreamFromFdOptions;
