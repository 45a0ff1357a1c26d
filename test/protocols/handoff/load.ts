// An HTTP load generator for the handoff tests: keep-alive workers (one
// agent, connections reused) and fresh-connection workers, some slow
// requests so that requests are in flight during every handoff.
import http from 'node:http';

export interface LoadResult {
  requests: number;
  failed: number;
  errors: string[];
  reused: number;
  byGeneration: Record<string, number>;
}

export function startLoad(
  target: { port?: number; socketPath?: string },
  keepAliveWorkers = 4,
  freshWorkers = 2,
): { stop: () => Promise<LoadResult>; result: LoadResult } {
  const result: LoadResult = { requests: 0, failed: 0, errors: [], reused: 0, byGeneration: {} };
  const agent = new http.Agent({ keepAlive: true, maxSockets: keepAliveWorkers });
  let running = true;
  let n = 0;
  const one = (useAgent: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const ms = n++ % 5 === 0 ? 150 : 0;
      const req = http.get({ ...target, host: '127.0.0.1', path: `/?ms=${ms}`, agent: useAgent ? agent : false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            const j = JSON.parse(body) as { gen: number };
            if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
            result.requests++;
            result.byGeneration[j.gen] = (result.byGeneration[j.gen] ?? 0) + 1;
          } catch (err) {
            result.failed++;
            result.errors.push(String(err));
          }
          resolve();
        });
        res.on('error', (err) => {
          result.failed++;
          result.errors.push(String(err));
          resolve();
        });
      });
      req.on('socket', () => {
        if (req.reusedSocket) result.reused++;
      });
      req.setTimeout(30_000, () => req.destroy(new Error('request timeout')));
      req.on('error', (err) => {
        result.failed++;
        result.errors.push(`${String(err)} (reused socket: ${req.reusedSocket})`);
        resolve();
      });
    });
  const worker = async (useAgent: boolean): Promise<void> => {
    while (running) await one(useAgent);
  };
  const workers = [
    ...Array.from({ length: keepAliveWorkers }, () => worker(true)),
    ...Array.from({ length: freshWorkers }, () => worker(false)),
  ];
  return {
    result,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      agent.destroy();
      return result;
    },
  };
}
