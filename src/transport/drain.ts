// Draining a process's listeners: stop accepting, let in-flight requests
// finish (HTTP responses say "Connection: close"), destroy what is left at a
// deadline. Shared by fdpass/handoff (after a successor took the listeners)
// and fdpass/systemd's stored listeners (on SIGTERM from `systemctl restart`):
// in both cases another process, or the service manager, still holds the
// listening socket, so closing ours drops no connection waiting in its backlog.
import { linkSync, renameSync, unlinkSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import net from 'node:net';
import type { Server, Socket } from 'node:net';

export interface DrainResult {
  /** Connections destroyed at the deadline (0 when everything finished in time). */
  forced: number;
}

/** What was still running when draining started. */
export interface DrainState {
  inFlight: number;
  connections: number;
}

interface Entry {
  name: string;
  server: Server;
  connections: Set<Socket>;
  responses: Set<ServerResponse>;
}

/** Named servers whose connections and in-flight HTTP responses are tracked, so that they can be drained. */
export class Drainer {
  #entries: Entry[] = [];
  #closing: () => boolean;

  /** `closing()` true: responses say "Connection: close" (and are no longer counted as in flight). */
  constructor(closing: () => boolean) {
    this.#closing = closing;
  }

  has(name: string): boolean {
    return this.#entries.some((e) => e.name === name);
  }

  /** The servers that are still listening, in the order they were added. */
  listening(): { name: string; server: Server }[] {
    return this.#entries.filter((e) => e.server.listening).map(({ name, server }) => ({ name, server }));
  }

  add(server: Server, name: string): void {
    const entry: Entry = { name, server, connections: new Set(), responses: new Set() };
    server.on('connection', (s: Socket) => {
      entry.connections.add(s);
      s.once('close', () => entry.connections.delete(s));
    });
    // HTTP: while draining, every response says "Connection: close", so that
    // clients do not send more requests on connections that are going away.
    server.prependListener('request', (_req: unknown, res: ServerResponse) => {
      if (this.#closing()) {
        if (!res.headersSent) res.setHeader('connection', 'close');
      } else {
        entry.responses.add(res);
        res.once('close', () => entry.responses.delete(res));
      }
    });
    this.#entries.push(entry);
  }

  /**
   * Stop accepting on every server, let connections end, destroy those left
   * after `timeout` ms. `onStart` gets what was running when it began.
   */
  async drain(timeout: number, onStart?: (state: DrainState) => void): Promise<DrainResult> {
    let inFlight = 0;
    let connections = 0;
    for (const e of this.#entries) {
      for (const res of e.responses) {
        inFlight++;
        if (!res.headersSent) res.setHeader('connection', 'close');
      }
      connections += e.connections.size;
    }
    onStart?.({ inFlight, connections });
    let forced = 0;
    await Promise.all(
      this.#entries.map(
        (e) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              for (const s of e.connections) {
                forced++;
                s.destroy();
              }
            }, timeout);
            stopAccepting(e, () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    return { forced };
  }
}

export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/**
 * Close the listening socket (this process's copy only; the successor's or
 * the service manager's stays open) and call done once every connection has
 * ended. net's close, not http's: http's also destroys idle keep-alive
 * connections at once, and a client may have just sent a request on one.
 * Node unlinks the path of a Unix listener it bound itself: keep a second
 * name for the socket and put it back, since the socket still listens.
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
