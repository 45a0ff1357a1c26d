// Drain policy: the servers a Handoff offers, the connections and HTTP
// responses they are running, and how to stop them: stop accepting, let
// in-flight requests finish ("Connection: close" on HTTP responses), destroy
// what is left at the deadline.
import { linkSync, renameSync, unlinkSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import net from 'node:net';
import type { ListenOptions as NetListenOptions, Server, Socket } from 'node:net';

/** What listen() falls back to when no predecessor handed over a listener of that name. */
export type ListenFallback = number | string | NetListenOptions | { fd: number };

/** A server offered under a name, and what it is running. */
export interface Entry {
  name: string;
  server: Server;
  connections: Set<Socket>;
  responses: Set<ServerResponse>;
}

/**
 * Track `server`'s connections and HTTP responses. While `draining()` says
 * so, every response says "Connection: close", so that clients do not send
 * more requests on connections that are going away.
 */
export function track(server: Server, name: string, draining: () => boolean): Entry {
  const entry: Entry = { name, server, connections: new Set(), responses: new Set() };
  server.on('connection', (s: Socket) => {
    entry.connections.add(s);
    s.once('close', () => entry.connections.delete(s));
  });
  server.prependListener('request', (_req: unknown, res: ServerResponse) => {
    if (draining()) {
      if (!res.headersSent) res.setHeader('connection', 'close');
    } else {
      entry.responses.add(res);
      res.once('close', () => entry.responses.delete(res));
    }
  });
  return entry;
}

/** Listen as `how` says; resolves once listening. */
export function listenOn(server: Server, how: ListenFallback): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if (typeof how === 'number' || typeof how === 'string') server.listen(how);
    else server.listen(how);
  });
}

/** What was running when draining started. */
export function running(entries: readonly Entry[]): { inFlight: number; connections: number } {
  let inFlight = 0;
  let connections = 0;
  for (const e of entries) {
    for (const res of e.responses) {
      inFlight++;
      if (!res.headersSent) res.setHeader('connection', 'close');
    }
    connections += e.connections.size;
  }
  return { inFlight, connections };
}

/**
 * Stop accepting on every server and wait for their connections to end,
 * destroying those still open after `deadlineMs`. Resolves with how many
 * were destroyed.
 */
export async function drainAll(entries: readonly Entry[], deadlineMs: number): Promise<number> {
  let forced = 0;
  await Promise.all(
    entries.map(
      (e) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            for (const s of e.connections) {
              forced++;
              s.destroy();
            }
          }, deadlineMs);
          stopAccepting(e, () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
  return forced;
}

export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/**
 * Close the listening socket (this process's copy only; the successor's
 * stays open) and call done once every connection has ended. net's close,
 * not http's: http's also destroys idle keep-alive connections at once, and a
 * client may have just sent a request on one. Node unlinks the path of a Unix
 * listener it bound itself: keep a second name for the socket and put it
 * back, since the successor still listens on it.
 */
function stopAccepting(entry: Entry, done: () => void): void {
  const server = entry.server;
  if (!server.listening) {
    const check = (): void => {
      if (entry.connections.size === 0) done();
      else
        entry.connections
          .values()
          .next()
          .value!.once('close', () => setImmediate(check));
    };
    check();
    return;
  }
  const address = server.address();
  let keep: string | null = null;
  if (typeof address === 'string' && address.length > 0 && !address.startsWith('\0')) {
    keep = `${address}.${process.pid}.keep`;
    try {
      linkSync(address, keep);
    } catch {
      keep = null;
    }
  }
  net.Server.prototype.close.call(server, () => done());
  if (keep) {
    try {
      renameSync(keep, address as string);
    } catch {
      // the path was taken by someone else: leave it
    }
    unlinkQuietly(keep);
  }
}
