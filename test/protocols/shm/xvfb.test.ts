// fdpass/shm against an X server: Debian's Xvfb and its MIT-SHM extension,
// spoken by hand over an FdStream (the X11 core protocol and MIT-SHM 1.2,
// little-endian). We fill a pixmap with known colours, attach a memfd to
// the server (ShmAttachFd: the fd rides with the request's bytes), have the
// server copy the pixmap into it (ShmGetImage, ZPixmap), and read the pixels
// from our mapping. The other way round: the server creates a segment
// (ShmCreateSegment) and sends its fd in the reply, which we map and fill,
// and the server draws it (ShmPutImage).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { FdStream } from 'fdpass/stream';
import { SharedMemory } from 'fdpass/shm';
import { killAtEnd, openFds } from '../../helpers.js';
import { exited } from '../../lines.js';
import { needs } from '../../tools.js';

const pad4 = (n: number) => (n + 3) & ~3;

/** Starts Xvfb on a display it picks (-displayfd); resolves with the display number. */
async function startXvfb(t: { after: (fn: () => void) => void }): Promise<{ display: number; child: ChildProcess }> {
  const child = killAtEnd(
    t,
    spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '64x48x24', '-nolisten', 'tcp', '-noreset'], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    }),
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const display = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdio[3]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.endsWith('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`Xvfb exited (${code}) before it was ready: ${err}`)));
  });
  return { display, child };
}

interface XReply {
  data: Buffer;
  fds: number[];
}

/** Just enough of an X11 client: requests out, replies (and their fds) in, errors thrown. */
class X11 {
  readonly stream: FdStream;
  #buf = Buffer.alloc(0);
  #fds: number[] = [];
  #wake: (() => void) | null = null;
  #seq = 0;
  #nextId = 0;
  setup!: { idBase: number; root: number; rootDepth: number };

  constructor(path: string) {
    this.stream = FdStream.connect(path);
    this.stream.on('fds', (fds: number[]) => this.#fds.push(...fds));
    this.stream.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
  }

  async #take(n: number): Promise<Buffer> {
    while (this.#buf.length < n) {
      await new Promise<void>((resolve, reject) => {
        this.#wake = resolve;
        this.stream.once('close', () => reject(new Error('the X server closed the connection')));
      });
      this.#wake = null;
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  async handshake(): Promise<void> {
    const req = Buffer.alloc(12);
    req.write('l', 0); // little-endian
    req.writeUInt16LE(11, 2); // protocol 11.0, no authorization
    this.stream.write(req);
    const head = await this.#take(8);
    const more = await this.#take(head.readUInt16LE(6) * 4);
    assert.equal(head[0], 1, `connection refused: ${more.toString('latin1')}`);
    const vendorLen = more.readUInt16LE(16);
    const formats = more[21]!;
    const screen = 32 + pad4(vendorLen) + 8 * formats;
    this.setup = { idBase: more.readUInt32LE(4), root: more.readUInt32LE(screen), rootDepth: more[screen + 38]! };
  }

  id(): number {
    return this.setup.idBase + ++this.#nextId;
  }

  /** Send a request (its length field is filled in), with fds if any; its sequence number. */
  request(bytes: Buffer, fds: number[] = []): number {
    bytes.writeUInt16LE(bytes.length / 4, 2);
    this.stream.write({ data: bytes, fds });
    return ++this.#seq;
  }

  /** The reply to request `seq`; an X error for it, or before it, throws. */
  async reply(seq: number): Promise<XReply> {
    for (;;) {
      const head = await this.#take(32);
      if (head[0] === 0)
        throw new Error(`X error ${head[1]} for request ${head.readUInt16LE(2)} (major ${head[10]}, minor ${head.readUInt16LE(8)})`);
      if (head[0] !== 1) continue; // an event
      const data = Buffer.concat([head, await this.#take(head.readUInt32LE(4) * 4)]);
      if (head.readUInt16LE(2) === (seq & 0xffff)) return { data, fds: this.#fds.splice(0) };
    }
  }

  /** Wait until the server has handled every request so far (GetInputFocus has a reply). */
  async sync(): Promise<void> {
    const req = Buffer.alloc(4);
    req[0] = 43;
    await this.reply(this.request(req));
  }

  async extension(name: string): Promise<number> {
    const req = Buffer.alloc(8 + pad4(name.length));
    req[0] = 98; // QueryExtension
    req.writeUInt16LE(name.length, 4);
    req.write(name, 8, 'latin1');
    const r = await this.reply(this.request(req));
    assert.equal(r.data[8], 1, `the server has no ${name}`);
    return r.data[9]!;
  }
}

const W = 64;
const H = 48;
const BLUE = 0x336699;
const ORANGE = 0xff8800;

describe('Xvfb (MIT-SHM) maps our memfd and sends us its own', needs('xvfb'), () => {
  test('ShmAttachFd + ShmGetImage: the server writes a pixmap into our memfd; we read the pixels from the mapping', async (t) => {
    const before = openFds();
    const { display, child } = await startXvfb(t);
    const x = new X11(`/tmp/.X11-unix/X${display}`);
    await x.handshake();
    const shmOp = await x.extension('MIT-SHM');
    const ver = Buffer.alloc(4);
    ver[0] = shmOp; // ShmQueryVersion
    const v = await x.reply(x.request(ver));
    assert.ok(v.data.readUInt16LE(8) > 1 || v.data.readUInt16LE(10) >= 2, 'MIT-SHM >= 1.2 (file descriptors)');

    // A pixmap in BLUE with an ORANGE 4x3 rectangle at (10, 20).
    const pixmap = x.id();
    const gc = x.id();
    const cp = Buffer.alloc(16);
    cp[0] = 53; // CreatePixmap
    cp[1] = x.setup.rootDepth;
    cp.writeUInt32LE(pixmap, 4);
    cp.writeUInt32LE(x.setup.root, 8);
    cp.writeUInt16LE(W, 12);
    cp.writeUInt16LE(H, 14);
    x.request(cp);
    const cg = Buffer.alloc(20);
    cg[0] = 55; // CreateGC, value mask: foreground
    cg.writeUInt32LE(gc, 4);
    cg.writeUInt32LE(pixmap, 8);
    cg.writeUInt32LE(0x4, 12);
    cg.writeUInt32LE(BLUE, 16);
    x.request(cg);
    const fill = (color: number, rx: number, ry: number, rw: number, rh: number) => {
      const ch = Buffer.alloc(16);
      ch[0] = 56; // ChangeGC: foreground
      ch.writeUInt32LE(gc, 4);
      ch.writeUInt32LE(0x4, 8);
      ch.writeUInt32LE(color, 12);
      x.request(ch);
      const pf = Buffer.alloc(20);
      pf[0] = 70; // PolyFillRectangle
      pf.writeUInt32LE(pixmap, 4);
      pf.writeUInt32LE(gc, 8);
      pf.writeInt16LE(rx, 12);
      pf.writeInt16LE(ry, 14);
      pf.writeUInt16LE(rw, 16);
      pf.writeUInt16LE(rh, 18);
      x.request(pf);
    };
    fill(BLUE, 0, 0, W, H);
    fill(ORANGE, 10, 20, 4, 3);

    // Our memfd, sealed so that the server cannot shrink it under us either.
    const shm = SharedMemory.create(W * H * 4, { name: 'xvfb-image', seals: ['shrink', 'grow'] });
    const seg = x.id();
    const attach = Buffer.alloc(12);
    attach[0] = shmOp;
    attach[1] = 6; // ShmAttachFd
    attach.writeUInt32LE(seg, 4);
    attach[8] = 0; // read-write: the server writes into it
    x.request(attach, [shm.fd]);
    const get = Buffer.alloc(32);
    get[0] = shmOp;
    get[1] = 4; // ShmGetImage
    get.writeUInt32LE(pixmap, 4);
    get.writeUInt16LE(W, 12);
    get.writeUInt16LE(H, 14);
    get.writeUInt32LE(0xffffffff, 16);
    get[20] = 2; // ZPixmap
    get.writeUInt32LE(seg, 24);
    get.writeUInt32LE(0, 28);
    const img = await x.reply(x.request(get));
    assert.equal(img.data[1], 24, 'depth');
    assert.equal(img.data.readUInt32LE(12), W * H * 4, 'bytes written into the segment');

    const px = new Uint32Array(shm.buffer);
    const at = (px_: number, py: number) => px[py * W + px_]! & 0xffffff;
    assert.equal(at(0, 0), BLUE);
    assert.equal(at(W - 1, H - 1), BLUE);
    assert.equal(at(10, 20), ORANGE);
    assert.equal(at(13, 22), ORANGE);
    assert.equal(at(14, 22), BLUE);
    assert.equal(at(13, 23), BLUE);
    let orange = 0;
    for (let i = 0; i < W * H; i++) if ((px[i]! & 0xffffff) === ORANGE) orange++;
    assert.equal(orange, 12);

    const detach = Buffer.alloc(8);
    detach[0] = shmOp;
    detach[1] = 2; // ShmDetach
    detach.writeUInt32LE(seg, 4);
    x.request(detach);
    await x.sync();
    shm.close();
    x.stream.destroy();
    await new Promise((res) => x.stream.once('close', res));
    child.kill('SIGTERM');
    await exited(child);
    assert.deepEqual(openFds(), before);
  });

  test('ShmCreateSegment: the server sends the fd of a segment it made; sealed against shrinking, it maps by default; we draw through it', async (t) => {
    const before = openFds();
    const { display, child } = await startXvfb(t);
    const x = new X11(`/tmp/.X11-unix/X${display}`);
    await x.handshake();
    const shmOp = await x.extension('MIT-SHM');
    const seg = x.id();
    const create = Buffer.alloc(16);
    create[0] = shmOp;
    create[1] = 7; // ShmCreateSegment
    create.writeUInt32LE(seg, 4);
    create.writeUInt32LE(W * H * 4, 8);
    create[12] = 0; // read-write
    const r = await x.reply(x.request(create));
    assert.equal(r.data[1], 1, 'one fd in the reply');
    assert.equal(r.fds.length, 1);
    const fd = r.fds[0]!;
    // The X server seals its segments against shrinking (Xorg 21's
    // shm_tmpfile), so the default accepts it.
    const shm = SharedMemory.fromFd(fd, { writable: true });
    assert.deepEqual(shm.seals, ['shrink']);
    assert.ok(shm.size >= W * H * 4);
    // Fill the root window from the segment (ShmPutImage), then read it back with
    // a core GetImage: what we wrote in our mapping is what the server drew.
    new Uint32Array(shm.buffer, 0, W * H).fill(ORANGE);
    const gc = x.id();
    const cg = Buffer.alloc(16);
    cg[0] = 55; // CreateGC, no values
    cg.writeUInt32LE(gc, 4);
    cg.writeUInt32LE(x.setup.root, 8);
    x.request(cg);
    const put = Buffer.alloc(40);
    put[0] = shmOp;
    put[1] = 3; // ShmPutImage
    put.writeUInt32LE(x.setup.root, 4);
    put.writeUInt32LE(gc, 8);
    put.writeUInt16LE(W, 12); // total width, height
    put.writeUInt16LE(H, 14);
    put.writeUInt16LE(W, 20); // src width, height (src x, y 0)
    put.writeUInt16LE(H, 22);
    put[28] = x.setup.rootDepth;
    put[29] = 2; // ZPixmap
    put.writeUInt32LE(seg, 32);
    x.request(put);
    const gi = Buffer.alloc(20);
    gi[0] = 73; // GetImage
    gi[1] = 2; // ZPixmap
    gi.writeUInt32LE(x.setup.root, 4);
    gi.writeUInt16LE(W, 12);
    gi.writeUInt16LE(H, 14);
    gi.writeUInt32LE(0xffffffff, 16);
    const img = await x.reply(x.request(gi));
    const pixels = img.data.subarray(32);
    assert.equal(pixels.length, W * H * 4);
    for (let i = 0; i < W * H; i++) assert.equal(pixels.readUInt32LE(i * 4) & 0xffffff, ORANGE, `pixel ${i}`);
    shm.close();
    x.stream.destroy();
    await new Promise((res) => x.stream.once('close', res));
    child.kill('SIGTERM');
    await exited(child);
    assert.deepEqual(openFds(), before);
  });
});
