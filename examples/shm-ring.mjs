// Two processes share a ring buffer of messages in a memfd (fdpass/shm); the
// socket between them carries only positions: the writer's "written up to N"
// and the reader's "read up to M", which frees room for the writer. The
// bytes of the messages never cross the socket.
// Run: node examples/shm-ring.mjs
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FdSocket } from 'fdpass';
import { SharedMemory } from 'fdpass/shm';

const RING = 4096; // bytes; small, so that the 1000 messages wrap around it
const COUNT = 1000;

// Positions count bytes from the start and only grow; a byte at position p
// lives at p % RING. A message is a 4-byte length and its bytes.
function copyIn(ring, pos, bytes) {
  for (let i = 0; i < bytes.length; i++) ring[(pos + i) % RING] = bytes[i];
}
function copyOut(ring, pos, length) {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = ring[(pos + i) % RING];
  return out;
}
const u32 = (n) => new Uint8Array(new Uint32Array([n]).buffer);
const fromU32 = (b) => new Uint32Array(b.buffer)[0];

if (process.argv[2] === 'writer') {
  // The writer: fd 3 is its end of the socket; the ring arrives on it.
  const sock = FdSocket.fromFd(3);
  const { fd } = await sock.recvFd();
  const shm = SharedMemory.fromFd(fd, { writable: true }); // sealed by the reader: safe to map
  const ring = new Uint8Array(shm.buffer);
  let written = 0;
  let freed = 0; // the reader's last "read up to"
  let wake = () => {};
  sock.on('message', (m) => {
    freed = Number(m.data.toString().slice(2));
    wake();
  });
  for (let i = 0; i < COUNT; i++) {
    const text = Buffer.from(`message ${i}`);
    while (written + 4 + text.length - freed > RING) await new Promise((resolve) => (wake = resolve));
    copyIn(ring, written, u32(text.length));
    copyIn(ring, written + 4, text);
    written += 4 + text.length;
    await sock.send(`w ${written}`);
  }
  while (freed < written) await new Promise((resolve) => (wake = resolve)); // all read
  await sock.send('end');
  shm.close();
  await sock.close();
} else {
  // The reader: creates the ring, seals its size, starts the writer and sends it the fd.
  const shm = SharedMemory.create(RING, { name: 'ring', seals: ['shrink', 'grow', 'seal'] });
  const ring = new Uint8Array(shm.buffer);
  const [ours, theirs] = FdSocket.pair('seqpacket'); // one notice per message
  const writer = spawn(process.execPath, [fileURLToPath(import.meta.url), 'writer'], {
    stdio: ['ignore', 'inherit', 'inherit', theirs.fd],
  });
  await theirs.close();
  await ours.sendFd('ring', shm.fd);
  let read = 0;
  let count = 0;
  let bytes = 0;
  let last = '';
  for (;;) {
    const notice = (await ours.recv()).data.toString();
    if (notice === 'end') break;
    const upTo = Number(notice.slice(2));
    while (read < upTo) {
      const length = fromU32(copyOut(ring, read, 4));
      last = Buffer.from(copyOut(ring, read + 4, length)).toString();
      read += 4 + length;
      bytes += length;
      count++;
    }
    await ours.send(`r ${read}`);
  }
  await new Promise((resolve) => writer.on('exit', resolve));
  await ours.close();
  shm.close();
  console.log(`reader: ${count} messages, ${bytes} bytes through a ${RING}-byte ring`);
  console.log(`reader: the last one: "${last}"`);
}
