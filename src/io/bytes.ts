// The byte I/O of fds that are not sockets (a pty master): read(2) and
// write(2) in batches, one crossing into the addon each, never blocking (the
// fd is non-blocking). Sockets read with readBatch (recv.ts) and send with
// sendSome (send.ts) instead: those carry fds.
import { native } from '../base/native.js';

/**
 * Read what `fd` has now into `buffer`, until it is full or the fd is
 * empty. Returns the bytes read, 0 at end of file, or -errno (-EAGAIN:
 * nothing now; wait for POLLIN).
 */
export function readBytes(fd: number, buffer: Uint8Array): number {
  return native.readBytes(fd, buffer, 0, buffer.length);
}

/** Bytes on their way into an fd. */
export interface OutgoingBytes {
  data: Uint8Array;
  offset: number;
}

/**
 * Write what is left of `out` to `fd`. Returns 0 once the fd has all of it,
 * else the -errno that stopped it (-EAGAIN: no room; wait for POLLOUT), with
 * `out` advanced past what was written.
 */
export function writeBytes(fd: number, out: OutgoingBytes): number {
  while (out.offset < out.data.length) {
    const r = native.writeBytes(fd, out.data, out.offset, out.data.length - out.offset);
    if (r < 0) return r;
    out.offset += r;
  }
  return 0;
}

/** writeNow: no room in the fd now; wait for POLLOUT and write again. */
export const NO_ROOM = 1;

/**
 * writeBytes for a writer on the event loop: 0 once the fd has all of
 * `out`, NO_ROOM when it has no room now (wait for POLLOUT), else the -errno
 * of write(2).
 */
export function writeNow(fd: number, out: OutgoingBytes): number {
  const r = writeBytes(fd, out);
  return r === native.EAGAIN ? NO_ROOM : r;
}
