/**
 * fdpass: pass open file descriptors between processes over Unix domain
 * sockets (SCM_RIGHTS), wire-compatible with runc's SendFd/RecvFd.
 * @packageDocumentation
 */
export { FdSocket } from './transport/socket.js';
export type {
  BindOptions,
  ConnectOptions,
  FdSocketEvents,
  PeerCredentials,
  ReceivedFd,
  ReceivedMessage,
  RecvFdOptions,
  RecvOptions,
} from './transport/socket.js';
export { FdServer } from './transport/server.js';
export type { AcceptOptions, FdServerEvents, FromFdServerOptions, ListenOptions } from './transport/server.js';
export { sendFdSync, recvFdSync } from './transport/sync.js';
export { MAX_NAME_LEN } from './io/recv.js';
export { MAX_FDS, closeFds } from './base/fds.js';
export type { FdLike, HasFd } from './base/fds.js';
export { FdPassError, ErrorCodes } from './base/errors.js';
export type { ErrorCode } from './base/errors.js';
export type { AddressOptions, SocketType } from './base/address.js';
export { socketFromFd, serverFromFd, readStreamFromFd, writeStreamFromFd } from './transport/convert.js';
export type { StreamFromFdOptions } from './transport/convert.js';
import type { StreamFromFdOptions } from './transport/convert.js';
/**
 * @deprecated The options of readStreamFromFd and writeStreamFromFd are now
 * named StreamFromFdOptions; `FdStreamOptions` is FdStream's (fdpass/stream).
 */
export type FdStreamOptions = StreamFromFdOptions;
