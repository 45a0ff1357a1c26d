// The one door from a protocol (src/protocols/<name>/) to the layers below:
// everything a protocol uses of base, io and transport is re-exported here,
// so that this list is the whole of what protocols depend on (ESLint refuses
// any other import that leaves a protocol's folder). A protocol that needs
// more adds it here. Nothing here is exported by the package; names that
// their own modules keep out of the .d.ts stay out of this one too.
export { Kept, discardFds } from '../io/owned.js';
/** @internal */
export { recvKept, recvFdKept } from '../transport/socket.js';
export { encodeAddress, ipBytes } from '../base/address.js';
export type { AddressOptions } from '../base/address.js';
export {
  ErrorCodes,
  FdPassError,
  abortError,
  checkSignal,
  closedError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  systemError,
} from '../base/errors.js';
export { FdLike, checkFdNumber, closeFds, closeRange, toFd, toFdArray } from '../base/fds.js';
export { native } from '../base/native.js';
export { runtime, unsupportedRuntime } from '../base/runtime.js';
export type { Mapping } from '../base/native.js';
export { Acceptor } from '../io/acceptor.js';
export type { Accepted } from '../io/acceptor.js';
export { NO_ROOM, readBytes, writeNow } from '../io/bytes.js';
export type { OutgoingBytes } from '../io/bytes.js';
export { DRAINED, ENDED, MORE, Pump } from '../io/pump.js';
export { BATCH, DEFAULT_MAX_BYTES, FLAG_CTRUNC, FLAG_EOF, FLAG_TRUNC, MAX_FDS, readBatch, toReceivedMessage } from '../io/recv.js';
export type { RawEntry } from '../io/recv.js';
export { SendQueue } from '../io/send.js';
export { bindSocket, listenSocket, socketInfo, unlinkIfSame } from '../io/sockops.js';
export type { FileId, PeerCredentials } from '../io/sockops.js';
export { WaitQueue } from '../io/waiters.js';
export { listenOn, serverFromFd } from '../transport/convert.js';
export type { ServerListen } from '../transport/convert.js';
export { Drainer, unlinkQuietly } from '../transport/drain.js';
export type { DrainResult, DrainState } from '../transport/drain.js';
export { Pidfd } from '../transport/pidfd.js';
export type { PidfdExitStatus, PidfdExitedOptions } from '../transport/pidfd.js';
export { FdServer, sameUid } from '../transport/server.js';
export { FdSocket, encodeName } from '../transport/socket.js';
export type { ReceivedMessage } from '../transport/socket.js';
export { FdStream } from '../transport/stream/index.js';
export type { FdChunk, FdWrite } from '../transport/stream/index.js';
/** @internal */
export { streamInternals } from '../transport/stream/index.js';
