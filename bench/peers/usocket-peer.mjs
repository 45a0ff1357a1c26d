// usocket (npm) ends of the benchmark, over the socket inherited as fd 3:
//   usocket-peer.mjs send COUNT      write({ data, fds, callback }), awaited
//   usocket-peer.mjs recv COUNT WARMUP   'readable' + read(9, 1)
// usocket is not a dependency of fdpass: `npm install --no-save usocket`.
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { report } from './report.mjs';

const require = createRequire(import.meta.url);
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
  sock.end();
} else if (mode === 'recv') {
  const warmup = Number(warmupArg);
  let t0 = process.hrtime.bigint();
  let i = 0;
  process.on('exit', () => {
    if (i !== count) process.stderr.write(`usocket: stalled after ${i} of ${count} messages\n`);
  });
  await new Promise((resolve, reject) => {
    sock.on('error', reject);
    sock.on('end', () => reject(new Error(`end of file after ${i} messages`)));
    sock.read(0);
    sock.on('readable', () => {
      for (;;) {
        const m = sock.read(NAME.length, 1);
        if (!m) return;
        if (i === warmup) t0 = process.hrtime.bigint();
        for (const fd of m.fds) closeSync(fd);
        if (++i === count) return resolve();
      }
    });
  });
  report(count - warmup, t0);
  sock.destroy();
} else {
  throw new Error(`unknown mode ${mode}`);
}
