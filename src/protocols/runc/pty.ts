// PtyStream: a Duplex over a pty master that never blocks the event loop.
//
// Node's own tty.ReadStream/WriteStream are no good for a pty master: libuv
// cannot reopen a master, so it falls back to blocking writes (a full pty
// freezes the whole process), and with O_NONBLOCK set it spins on EAGAIN.
// Here the fd is made non-blocking, the core's read pump reads it on demand,
// and the core's readBytes/writeNow (read(2)/write(2) in batches, in the
// addon) are called only when they cannot block. Not node:fs: Deno
// refuses readSync/writeSync (EBADF) on an fd it did not open itself, such
// as one received from runc.
import { Duplex, type DuplexOptions } from 'node:stream';
import { constants } from 'node:os';
import {
  closedError,
  invalidArgType,
  outOfRange,
  systemError,
  checkFdNumber,
  NO_ROOM,
  readBytes,
  writeNow,
  type OutgoingBytes,
  DRAINED,
  ENDED,
  MORE,
  Pump,
  native,
} from '../internal.js';

const READ_SIZE = 65536;
const { EIO } = constants.errno;

interface PendingWrite extends OutgoingBytes {
  callback: (error?: Error | null) => void;
}

function checkDimension(value: unknown, name: string): void {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw outOfRange(name, 'an integer from 0 to 65535', value);
}

/**
 * A pty master as a Duplex stream: reading gives what the terminal's programs
 * write, writing types into the terminal. The stream owns the fd and closes it
 * once, when destroyed. When the terminal's last user closes its side
 * (EIO on the master), the readable side ends; writes after that are
 * discarded, as a hung-up terminal does.
 */
export class PtyStream extends Duplex {
  readonly #reader: Pump;
  #wantRead = false;
  #hungUp = false;
  #pending: PendingWrite | null = null;
  readonly #buffer = Buffer.allocUnsafe(READ_SIZE);

  /** Takes ownership of `fd` (closed by destroy(), or at once if this throws). */
  constructor(fd: number, options?: Omit<DuplexOptions, 'objectMode' | 'readableObjectMode' | 'writableObjectMode'>) {
    super({ ...options, decodeStrings: true });
    checkFdNumber(fd);
    const r = native.setFlags(fd, 1, 1);
    if (r < 0) {
      native.close(fd);
      throw systemError(r, 'fcntl');
    }
    this.#reader = new Pump(fd, {
      demand: () => this.#wantRead && !this.#hungUp,
      step: () => this.#step(),
      // EIO: the terminal's last user closed its side.
      readFailed: (errno) => (errno === -EIO ? this.#hangUp() : this.destroy(systemError(errno, 'read'))),
      failed: (err) => this.destroy(err),
      writePending: () => this.#pending !== null,
      writable: () => this.#writeNow(),
    });
  }

  /** The pty master fd, or -1 once destroyed. */
  get fd(): number {
    return this.#reader.fd;
  }

  /**
   * Set the terminal's size (TIOCSWINSZ), as a terminal emulator does when
   * its window changes: the programs in the terminal get SIGWINCH. Set it
   * before `runc start` and the container's first program sees it (a runc
   * pty starts at 0x0).
   */
  resize(cols: number, rows: number): void {
    checkDimension(cols, 'cols');
    checkDimension(rows, 'rows');
    if (this.#reader.fd < 0) throw closedError('pty stream');
    const r = native.setWindowSize(this.#reader.fd, cols, rows);
    if (r < 0) throw systemError(r, 'ioctl');
  }

  /** The terminal's size (TIOCGWINSZ): `{ cols, rows }`, 0x0 until someone sets it. */
  getWindowSize(): { cols: number; rows: number } {
    if (this.#reader.fd < 0) throw closedError('pty stream');
    const r = native.getWindowSize(this.#reader.fd);
    if (r < 0) throw systemError(r, 'ioctl');
    return { cols: r >>> 16, rows: r & 0xffff };
  }

  /** @internal */
  override _read(): void {
    this.#wantRead = true;
    this.#reader.pump();
  }

  /** The pump's step: one batch of read(2). */
  #step(): number {
    const n = readBytes(this.#reader.fd, this.#buffer);
    if (n < 0) return n;
    if (n === 0) {
      this.#hangUp();
      return ENDED;
    }
    this.#wantRead = this.push(Buffer.from(this.#buffer.subarray(0, n)));
    // A short batch ended at EAGAIN (or at what the next read reports):
    // readiness says when there is more.
    return n < READ_SIZE ? DRAINED : MORE;
  }

  /** The terminal closed: end the readable side, drop what waits to be written. */
  #hangUp(): void {
    this.#hungUp = true;
    this.#wantRead = false;
    this.push(null);
    const p = this.#pending;
    this.#pending = null;
    p?.callback();
    this.#reader.end();
  }

  /** @internal */
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#hungUp) return callback();
    this.#pending = { data: chunk, offset: 0, callback };
    this.#writeNow();
  }

  #writeNow(): void {
    const p = this.#pending;
    if (!p || this.#reader.fd < 0) return;
    const r = writeNow(this.#reader.fd, p);
    if (r !== NO_ROOM) {
      this.#pending = null;
      if (r === -EIO) {
        // The terminal hung up: what is typed into it is lost, like on a real one.
        p.callback();
        this.#hangUp();
        return;
      }
      p.callback(r < 0 ? systemError(r, 'write') : null);
    }
    this.#reader.update();
  }

  /** @internal */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#wantRead = false;
    const p = this.#pending;
    this.#pending = null;
    const r = this.#reader.close();
    const closeError = r < 0 ? systemError(r, 'close') : null;
    p?.callback(error ?? closedError('pty stream'));
    callback(error ?? closeError);
  }
}
