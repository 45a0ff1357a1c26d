// The running generation's side: a successor connected to the control
// socket; offer it our listeners and wait for its "ready".
import type { FdSocket } from '../internal.js';
import { messages, receive, send } from './protocol.js';

/** How an offer ended: taken (the successor is ready), or why not. */
export interface OfferResult {
  took: boolean;
  reason: string;
}

/**
 * Offer the listeners `listening()` gives (name and fd) to the successor on `sock`. Once
 * it says "ready", `onReady` runs and the successor is told we drain. Fds a
 * successor sends are closed: it has no business sending any.
 */
export async function offerTo(
  sock: FdSocket,
  listening: () => { name: string; fd: number }[],
  timeout: number,
  onReady: () => void,
): Promise<OfferResult> {
  let reason = 'closed the connection before it was ready';
  try {
    const first = await receive(sock, timeout);
    first?.fds.discard();
    if (!first || first.message?.op !== 'take') return { took: false, reason: first ? 'sent no take request' : reason };
    const live = listening();
    await send(
      sock,
      messages.offer(live.map((e) => e.name)),
      live.map((e) => e.fd),
    );
    let next;
    try {
      next = await receive(sock, timeout);
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
      reason = `was not ready within ${timeout} ms`;
      await send(sock, messages.abort(reason)).catch(() => undefined);
      return { took: false, reason };
    }
    next?.fds.discard();
    if (next?.message?.op !== 'ready') {
      if (next) reason = `sent ${JSON.stringify(next.message)} instead of ready`;
      return { took: false, reason };
    }
    onReady();
    await send(sock, messages.draining()).catch(() => undefined);
    return { took: true, reason: '' };
  } catch (err) {
    return { took: false, reason: (err as Error).message };
  }
}

/** Tell a successor that comes while we are not serving that we are busy. */
export async function refuseBusy(sock: FdSocket): Promise<void> {
  await send(sock, messages.busy()).catch(() => undefined);
}
