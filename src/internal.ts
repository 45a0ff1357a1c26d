// What protocol modules (src/runc, src/handoff, src/systemd, src/usocket) may
// use of the library beyond its public API, in one place. Nothing here is
// exported by the package.
export { Kept, discardFds } from './io/owned.js';
/** @internal */
export { recvKept, recvFdKept } from './socket.js';
