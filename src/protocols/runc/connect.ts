// Sending side helper: a path means "connect, send one message, close" (what
// runc does); an FdSocket is used as it is and stays open.
import { invalidArgType, FdSocket } from '../internal.js';

/** Where a sender delivers its message: a socket path, or a connected FdSocket. */
export type RuncTarget = string | FdSocket;

export async function withTarget(target: unknown, send: (sock: FdSocket) => Promise<void>): Promise<void> {
  if (target instanceof FdSocket) return send(target);
  if (typeof target !== 'string') throw invalidArgType('target', 'a socket path or an FdSocket', target);
  const sock = await FdSocket.connect(target);
  try {
    await send(sock);
  } finally {
    await sock.close();
  }
}
