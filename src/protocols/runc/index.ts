/**
 * fdpass/runc: the fds runc hands to its caller. The console socket (pty
 * master), the seccomp notify listener (ContainerProcessState + seccomp fd)
 * and the pidfd socket, with senders that speak the same protocols.
 * @packageDocumentation
 */
export { listenConsoleSocket, sendConsole } from './console.js';
export type { ConsoleListener, ReceivedConsole } from './console.js';
export { listenSeccompAgent, sendContainerProcessState } from './seccomp.js';
export type { ReceivedContainerProcessState, SeccompAgentListener, SeccompAgentOptions } from './seccomp.js';
export { listenPidfdSocket, sendPidfd } from './pidfd.js';
export type { PidfdKind, PidfdListener, ReceivedPidfd } from './pidfd.js';
export { RuncListener } from './listener.js';
export type { RuncListenOptions, RuncListenerEvents } from './listener.js';
export { PtyStream } from './pty.js';
export { SECCOMP_FD_NAME, toContainerProcessState } from './state.js';
export type { ContainerProcessState, ContainerState, ContainerStatus } from './state.js';
export type { RuncTarget } from './connect.js';
