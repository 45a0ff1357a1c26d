/**
 * fdpass/pidfd: processes as fds. Signal a process, wait for it to exit and
 * take copies of its fds, safe from pid reuse, whether it is our child or
 * not: `Pidfd.open(pid)`, `Pidfd.fromFd(fd)` for a pidfd received from runc or
 * a peer, and `sock.peerPidfd()` on FdSocket and FdStream (SO_PEERPIDFD).
 * @packageDocumentation
 */
export { Pidfd, type PidfdExitedOptions, type PidfdExitStatus } from '../internal.js';
