// The receiving side of fdpass/shm's bench rows (bench/shm.mjs): take a
// 64 MiB buffer handed over in some way, read its last byte, answer with it.
//   shm           fds arrive on the socket at fd 3 (FdSocket); map each
//                 (SharedMemory.fromFd), read, close
//   shm-remap     the same, each fd after the first mapped into the first's
//                 buffer (shm.remap)
//   pipe SIZE     bytes arrive on stdin; answer on stdout per SIZE bytes
//   socket PATH SIZE  the same over an AF_UNIX stream connection to PATH
//   cp            child_process messages (json: a base64 string; advanced: a Buffer)
import { connect } from 'node:net';
import { FdSocket } from 'fdpass';
import { SharedMemory } from 'fdpass/shm';

const [mode, a, b] = process.argv.slice(2);

function countBytes(input, output, size) {
  let got = 0;
  input.on('data', (chunk) => {
    got += chunk.length;
    if (got === size) {
      got = 0;
      output.write(chunk.subarray(chunk.length - 1));
    }
  });
}

if (mode === 'shm' || mode === 'shm-remap') {
  const sock = FdSocket.fromFd(3);
  let kept = null;
  for (;;) {
    let got;
    try {
      got = await sock.recvFd();
    } catch {
      break; // the end of the socket: done
    }
    let last;
    if (mode === 'shm') {
      const shm = SharedMemory.fromFd(got.fd);
      last = new Uint8Array(shm.buffer)[shm.size - 1];
      shm.close();
    } else {
      if (kept) kept.shm.remap(got.fd);
      else kept = { shm: SharedMemory.fromFd(got.fd) };
      kept.view ??= new Uint8Array(kept.shm.buffer);
      last = kept.view[kept.shm.size - 1];
    }
    await sock.send(Uint8Array.of(last));
  }
  kept?.shm.close();
  await sock.close();
} else if (mode === 'pipe') {
  countBytes(process.stdin, process.stdout, Number(a));
} else if (mode === 'socket') {
  const s = connect(a);
  countBytes(s, s, Number(b));
  s.on('end', () => s.end());
} else if (mode === 'cp') {
  process.on('message', (m) => {
    const bytes = typeof m === 'string' ? Buffer.from(m, 'base64') : m;
    process.send(bytes[bytes.length - 1]);
  });
  process.on('disconnect', () => process.exit(0));
}
