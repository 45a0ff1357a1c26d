// Turn a received fd into what Node users hold: a net.Socket, a listening
// net.Server, a readable or writable stream. Each helper takes ownership of
// the fd: the object it returns closes it, and when a helper throws, it has
// closed the fd already (except EBADF: then there was nothing to close).
import { closeSync, createReadStream, createWriteStream, fstatSync, type Stats } from 'node:fs';
import { Server, Socket, type ListenOptions as NetListenOptions, type SocketConstructorOpts } from 'node:net';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ErrorCodes, FdPassError, systemError } from '../base/errors.js';
import { checkFdNumber } from '../base/fds.js';
import { native } from '../base/native.js';
import { socketInfo } from '../io/sockops.js';
import { runtime, unsupportedRuntime } from '../base/runtime.js';

const { AF_UNIX, AF_INET, AF_INET6 } = native;
const { EBADF } = constants.errno;

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing else to do
  }
}

/** Run fn; if it throws, close fd first. */
function owning<T>(fd: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

function statFd(fd: number): Stats {
  if (runtime.name === 'deno') {
    // Deno's node:fs and node:net refuse fds Deno did not open (EBADF) while
    // the fd is open: take it as the helpers do, and say why.
    native.close(fd);
    throw unsupportedRuntime(
      'socketFromFd, serverFromFd, readStreamFromFd and writeStreamFromFd do not work on Deno, whose node:fs and node:net refuse fds they did not open (the fd was closed); use FdSocket.fromFd, FdServer.fromFd, FdStream.fromFd or /proc/self/fd/N',
    );
  }
  try {
    return fstatSync(fd);
  } catch (err) {
    const errno = (err as { errno?: unknown }).errno;
    throw systemError(typeof errno === 'number' ? errno : -EBADF, 'fstat');
  }
}

function streamSocketInfo(fd: number, what: string, listening: boolean): void {
  const info = socketInfo(fd);
  if (info.type !== native.SOCK_STREAM || ![AF_UNIX, AF_INET, AF_INET6].includes(info.domain) || info.listening !== listening) {
    throw new FdPassError(
      ErrorCodes.BAD_SOCKET,
      `fd ${fd} is not ${what} (a ${listening ? 'listening' : 'connected'} stream socket: TCP or Unix)`,
    );
  }
}

/**
 * A `net.Socket` on a connected stream socket fd (TCP or Unix), readable and
 * writable unless `options` says otherwise. Takes ownership of the fd.
 * Throws ENOTSOCK for a file, ERR_FDPASS_BAD_SOCKET for a listening or
 * datagram socket, having closed the fd.
 */
export function socketFromFd(fd: number, options?: Omit<SocketConstructorOpts, 'fd'>): Socket {
  checkFdNumber(fd);
  statFd(fd);
  return owning(fd, () => {
    streamSocketInfo(fd, 'a connected socket', false);
    return new Socket({ readable: true, writable: true, ...options, fd });
  });
}

/**
 * Make `server` (a new `net.Server` by default; an `http.Server` works too)
 * listen on an inherited or received listening socket fd, as
 * `server.listen({ fd })` does, and resolve once it listens. Takes ownership
 * of the fd: `server.close()` closes it. Throws ERR_FDPASS_BAD_SOCKET for an
 * fd that is not a listening stream socket, having closed the fd.
 */
export async function serverFromFd<S extends Server = Server>(fd: number, server?: S): Promise<S> {
  checkFdNumber(fd);
  statFd(fd);
  owning(fd, () => streamSocketInfo(fd, 'a listening socket', true));
  const s = (server ?? new Server()) as S;
  try {
    await listenOn(s, { fd });
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  return s;
}

/** How a server listens when it inherits nothing: a port, a path, or net's listen options (e.g. `{ fd }`). */
export type ServerListen = number | string | NetListenOptions | { fd: number };

/** server.listen(how), as a promise that rejects on the server's 'error'. */
export function listenOn(server: Server, how: ServerListen): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if (typeof how === 'number' || typeof how === 'string') server.listen(how);
    else server.listen(how);
  });
}

/** Options of readStreamFromFd and writeStreamFromFd. */
export interface StreamFromFdOptions {
  /** Bytes buffered before backpressure (the streams' highWaterMark). */
  highWaterMark?: number;
  /** Decode read data as this encoding (readable side only). */
  encoding?: BufferEncoding;
}

function isStreamLike(st: Stats): boolean {
  return st.isFIFO() || st.isSocket();
}

/**
 * A Readable over an fd: an `fs.ReadStream` for a file or a device, a
 * read-only `net.Socket` for a pipe or a socket (libuv reads those without
 * blocking a thread). Takes ownership: the stream closes the fd when it ends
 * or is destroyed. For a pty master use `PtyStream` from `fdpass/runc`.
 */
export function readStreamFromFd(fd: number, options?: StreamFromFdOptions): Readable {
  checkFdNumber(fd);
  const st = statFd(fd);
  return owning(fd, () => {
    if (isStreamLike(st)) {
      const sock = new Socket({ fd, readable: true, writable: false });
      if (options?.encoding) sock.setEncoding(options.encoding);
      return sock;
    }
    return createReadStream('', { fd, autoClose: true, ...options });
  });
}

/**
 * A Writable over an fd: an `fs.WriteStream` for a file or a device, a
 * write-only `net.Socket` for a pipe or a socket. Takes ownership: the stream
 * closes the fd when it finishes or is destroyed.
 */
export function writeStreamFromFd(fd: number, options?: Omit<StreamFromFdOptions, 'encoding'>): Writable {
  checkFdNumber(fd);
  const st = statFd(fd);
  return owning(fd, () => {
    if (isStreamLike(st)) return new Socket({ fd, readable: false, writable: true });
    return createWriteStream('', { fd, autoClose: true, ...options });
  });
}
