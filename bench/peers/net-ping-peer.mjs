// The reference round trip of Node's own event loop: a net.Socket on the
// inherited fd 3, 9 bytes each way, no fds. Whatever an event-driven fd
// passer does, its round trip cannot be shorter than this one.
//
//   net-ping-peer.mjs ping COUNT WARMUP    prints p50/p99 (JSON)
//   net-ping-peer.mjs pong COUNT
import { Socket } from 'node:net';
import { reportLatency } from './report.mjs';

const [mode, countArg, warmArg] = process.argv.slice(2);
const count = Number(countArg);
const PAYLOAD = '/dev/ptmx';
const sock = new Socket({ fd: 3, readable: true, writable: true });

if (mode === 'ping') {
  const warmup = Number(warmArg);
  const lat = new Float64Array(count);
  let i = 0;
  let pending = '';
  let t = process.hrtime.bigint();
  sock.setEncoding('latin1');
  sock.on('data', (chunk) => {
    pending += chunk;
    while (pending.length >= PAYLOAD.length) {
      pending = pending.slice(PAYLOAD.length);
      lat[i] = Number(process.hrtime.bigint() - t) / 1e9;
      if (++i === count) {
        reportLatency(lat.subarray(warmup));
        sock.destroy();
        return;
      }
      t = process.hrtime.bigint();
      sock.write(PAYLOAD);
    }
  });
  sock.write(PAYLOAD);
} else if (mode === 'pong') {
  let answered = 0;
  sock.on('data', (chunk) => {
    sock.write(chunk);
    answered += chunk.length / PAYLOAD.length;
    if (answered >= count) sock.end();
  });
  sock.on('error', () => {});
  sock.on('close', () => process.exit(0));
} else {
  throw new Error(`unknown mode ${mode}`);
}
