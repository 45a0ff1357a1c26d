// One JSON line on stdout: what the bench's runner reads from every peer.

/** Throughput: `messages` received since the clock started at `t0` (hrtime.bigint). */
export function report(messages, t0) {
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`${JSON.stringify({ messages, seconds })}\n`);
}

/** Latency: p50 and p99 of round trips, in seconds. */
export function reportLatency(lat) {
  const sorted = Float64Array.from(lat).sort();
  const n = sorted.length;
  process.stdout.write(`${JSON.stringify({ messages: n, p50: sorted[Math.floor(n / 2)], p99: sorted[Math.floor((n * 99) / 100)] })}\n`);
}
