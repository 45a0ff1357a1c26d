// usocket (npm) ends of the benchmark, over the socket inherited as fd 3:
//   usocket-peer.mjs send COUNT      write({ data, fds, callback }), awaited
//   usocket-peer.mjs recv COUNT WARMUP   'readable' + read(9, 1)
// usocket is not a dependency of fdpass: bench/run.mjs installs it into the
// folder named by FDPASS_BENCH_USOCKET.
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setInterval, clearInterval } from 'node:timers';

const require = createRequire(`${process.env.FDPASS_BENCH_USOCKET ?? '.'}/`);
const { USocket } = require('usocket');
const [mode, countArg, warmupArg] = process.argv.slice(2);
const count = Number(countArg);
const NAME = Buffer.from('/dev/ptmx');
const sock = new USocket({ fd: 3 });

if (mode === 'send') {
  const fd = openSync('/dev/null', 'r');
  for (let i = 0; i < count; i++) {
    await new Promise((resolve) => sock.write({ data: NAME, fds: [fd], callback: resolve }));
  }
  // Not sock.end(): at end of stream usocket drops what it has buffered and
  // not yet handed out (seen here: the last ~50 of 20,000 messages). The
  // receiver closes when it has everything; that ends this side.
  await new Promise((resolve) => {
    sock.on('end', resolve);
    sock.on('close', resolve);
    sock.on('error', resolve);
    sock.resume();
  });
  sock.destroy();
} else if (mode === 'recv') {
  const warmup = Number(warmupArg);
  let t0 = process.hrtime.bigint();
  let tLast = t0;
  let i = 0;
  // usocket 1.1.0 stalls near the end of this workload: read(9, 1) keeps
  // returning null with the last messages' bytes and fds buffered, and no
  // event comes again. After 500 ms without progress the figure covers what
  // arrived, and the runner is told how many never came out.
  let stalled = 0;
  await new Promise((resolve, reject) => {
    sock.on('error', reject);
    sock.on('end', () => reject(new Error(`end of file after ${i} messages`)));
    sock.read(0);
    const watchdog = setInterval(() => {
      if (i > warmup && Number(process.hrtime.bigint() - tLast) > 500e6) {
        stalled = count - i;
        clearInterval(watchdog);
        resolve();
      }
    }, 100);
    const drain = () => {
      for (;;) {
        const m = sock.read(NAME.length, 1);
        if (!m) return;
        if (i === warmup) t0 = process.hrtime.bigint();
        for (const fd of m.fds) closeSync(fd);
        tLast = process.hrtime.bigint();
        if (++i === count) {
          clearInterval(watchdog);
          return resolve();
        }
      }
    };
    // read(size, 1) gives null while the bytes are there but the fd is not
    // yet: usocket then says 'fds', not 'readable', when the fd arrives.
    sock.on('readable', drain);
    sock.on('fds', drain);
  });
  const seconds = Number(tLast - t0) / 1e9;
  process.stdout.write(`${JSON.stringify({ messages: i - warmup, seconds, stalled })}\n`);
  sock.destroy();
} else {
  throw new Error(`unknown mode ${mode}`);
}
