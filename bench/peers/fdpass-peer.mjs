// fdpass ends of the benchmark. The socket is inherited as fd 3; results go
// to stdout as one JSON line, timed from message WARMUP on.
//
//   fdpass-peer.mjs send-await COUNT NFDS          await sock.sendFd() / send()
//   fdpass-peer.mjs send-window COUNT WINDOW       sock.sendFd(), awaiting every WINDOWth
//   fdpass-peer.mjs send-sync COUNT                sendFdSync()
//   fdpass-peer.mjs recv-await COUNT NFDS WARMUP   await sock.recv()
//   fdpass-peer.mjs recv-iter COUNT NFDS WARMUP    for await (const m of sock)
//   fdpass-peer.mjs recv-event COUNT NFDS WARMUP   sock.on('message')
//   fdpass-peer.mjs recv-sync COUNT 1 WARMUP       recvFdSync()
//   fdpass-peer.mjs ping-await|ping-sync COUNT WARMUP
//   fdpass-peer.mjs pong-await|pong-sync COUNT
import { closeSync, openSync, readdirSync } from 'node:fs';
import { FdSocket, closeFds, recvFdSync, sendFdSync } from 'fdpass';
import { report, reportLatency } from './report.mjs';
// The *Sync helpers serve runc-style callers, whose sockets are blocking; the C
// baseline makes its socket blocking too (set_blocking in fdbench.c), so the
// sync contenders get the same conditions. The addon is internal: reach it by path.
import { native } from '../../dist/base/native.js';
if (process.argv[2]?.endsWith('-sync')) native.setFlags(3, -1, 0);

const SOCK = 3;
const NAME = '/dev/ptmx';
const [mode, countArg, arg3, arg4] = process.argv.slice(2);
const count = Number(countArg);
const payloadFd = openSync('/dev/null', 'r');

// Receivers close what they get with closeFds (one call per message);
// FDPASS_BENCH_CLOSE=fs closes each fd with fs.closeSync instead, to show
// what that costs.
const closeEach = process.env.FDPASS_BENCH_CLOSE === 'fs';
const closeAll = closeEach ? (fds) => fds.forEach((fd) => closeSync(fd)) : closeFds;

function check(fds, nfds, i) {
  if (fds.length !== nfds) throw new Error(`message ${i}: ${fds.length} fds, expected ${nfds}`);
  closeAll(fds);
}

async function main() {
  switch (mode) {
    case 'send-await': {
      const nfds = Number(arg3);
      const sock = FdSocket.fromFd(SOCK);
      if (process.env.FDPASS_BENCH_STATS) {
        // The long run: RSS after warm-up and at the end, fds before/after.
        const gc = globalThis.gc ?? (() => {});
        const warmup = Math.floor(count / 10);
        let rssWarm = 0;
        let fdsBefore = 0;
        for (let i = 0; i < count; i++) {
          if (i === warmup) {
            gc();
            rssWarm = process.memoryUsage.rss();
            fdsBefore = readdirSync('/proc/self/fd').length;
          }
          await sock.sendFd(NAME, payloadFd);
        }
        gc();
        const growthMB = (process.memoryUsage.rss() - rssWarm) / (1024 * 1024);
        const fdsAfter = readdirSync('/proc/self/fd').length;
        process.stdout.write(`${JSON.stringify({ growthMB, fdsBefore, fdsAfter })}\n`);
      } else if (nfds === 1) {
        for (let i = 0; i < count; i++) await sock.sendFd(NAME, payloadFd);
      } else {
        const fds = new Array(nfds).fill(payloadFd);
        for (let i = 0; i < count; i++) await sock.send(NAME, fds);
      }
      await sock.close();
      return;
    }
    case 'send-window': {
      // Not a bench row: what a sender gains by not awaiting each send
      // (docs/performance.md, on sendmmsg).
      const window = Number(arg3);
      const sock = FdSocket.fromFd(SOCK);
      let sent = Promise.resolve();
      for (let i = 0; i < count; i++) {
        sent = sock.sendFd(NAME, payloadFd);
        if (i % window === window - 1) await sent;
      }
      await sent;
      await sock.close();
      return;
    }
    case 'send-sync':
      for (let i = 0; i < count; i++) sendFdSync(SOCK, NAME, payloadFd);
      closeSync(SOCK);
      return;
    case 'recv-await':
    case 'recv-iter':
    case 'recv-event':
    case 'recv-sync': {
      const nfds = Number(arg3);
      const warmup = Number(arg4);
      let t0 = process.hrtime.bigint();
      if (mode === 'recv-sync') {
        for (let i = 0; i < count; i++) {
          if (i === warmup) t0 = process.hrtime.bigint();
          const { fd } = recvFdSync(SOCK);
          closeAll([fd]);
        }
        closeSync(SOCK);
      } else {
        const sock = FdSocket.fromFd(SOCK);
        if (mode === 'recv-await') {
          for (let i = 0; i < count; i++) {
            if (i === warmup) t0 = process.hrtime.bigint();
            const m = await sock.recv();
            if (m === null) throw new Error(`end of file after ${i} messages`);
            check(m.fds, nfds, i);
          }
        } else if (mode === 'recv-iter') {
          let i = 0;
          for await (const m of sock) {
            if (i === warmup) t0 = process.hrtime.bigint();
            check(m.fds, nfds, i);
            if (++i === count) break;
          }
          if (i !== count) throw new Error(`end of file after ${i} messages`);
        } else {
          await new Promise((resolve, reject) => {
            let i = 0;
            sock.on('error', reject);
            sock.on('end', () => reject(new Error(`end of file after ${i} messages`)));
            sock.on('message', (m) => {
              if (i === warmup) t0 = process.hrtime.bigint();
              check(m.fds, nfds, i);
              if (++i === count) resolve();
            });
          });
        }
        await sock.close();
      }
      report(count - warmup, t0);
      return;
    }
    case 'ping-await':
    case 'ping-sync': {
      const warmup = Number(arg3);
      const lat = new Float64Array(count);
      if (mode === 'ping-sync') {
        for (let i = 0; i < count; i++) {
          const t = process.hrtime.bigint();
          sendFdSync(SOCK, NAME, payloadFd);
          closeAll([recvFdSync(SOCK).fd]);
          lat[i] = Number(process.hrtime.bigint() - t) / 1e9;
        }
        closeSync(SOCK);
      } else {
        const sock = FdSocket.fromFd(SOCK);
        for (let i = 0; i < count; i++) {
          const t = process.hrtime.bigint();
          await sock.sendFd(NAME, payloadFd);
          closeAll([(await sock.recvFd()).fd]);
          lat[i] = Number(process.hrtime.bigint() - t) / 1e9;
        }
        await sock.close();
      }
      reportLatency(lat.subarray(warmup));
      return;
    }
    case 'pong-await': {
      const sock = FdSocket.fromFd(SOCK);
      for (let i = 0; i < count; i++) {
        closeAll([(await sock.recvFd()).fd]);
        await sock.sendFd(NAME, payloadFd);
      }
      await sock.close();
      return;
    }
    case 'pong-sync':
      for (let i = 0; i < count; i++) {
        closeAll([recvFdSync(SOCK).fd]);
        sendFdSync(SOCK, NAME, payloadFd);
      }
      closeSync(SOCK);
      return;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

await main();
