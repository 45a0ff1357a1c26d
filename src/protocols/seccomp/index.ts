/**
 * fdpass/seccomp: a seccomp agent's side of user notification. Take the
 * notify fd runc sends (`listenSeccompAgent` in fdpass/runc), then refuse,
 * answer, let through or inject fds into the container's syscalls.
 * @packageDocumentation
 */
export { SeccompNotifier } from './notifier.js';
export type { SeccompAddFdOptions, SeccompNextOptions, SeccompRequest, SeccompResponse } from './notifier.js';
export { syscallName, syscallNumber } from './names.js';
