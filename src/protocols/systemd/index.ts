// fdpass/systemd: the service manager's side of fd passing.
// - daemon.ts: listenFds() (socket activation), notify(), storeFds(),
//   removeStoredFds(), notifyBarrier(), watchdog() ($NOTIFY_SOCKET), as
//   sd-daemon does.
// - listeners.ts: listenStored(), listeners kept in the fd store across
//   `systemctl restart`, drained on SIGTERM.
export {
  LISTEN_FDS_START,
  NOTIFY_MAX_BYTES,
  listenFds,
  formatState,
  notify,
  storeFds,
  removeStoredFds,
  notifyBarrier,
  watchdog,
  Watchdog,
} from './daemon.js';
export type {
  ListenFd,
  ListenFdsOptions,
  NotifyOptions,
  BarrierOptions,
  StoreFdsOptions,
  NotifyState,
  WatchdogOptions,
  WatchdogEvents,
} from './daemon.js';
export { listenStored, StoredListeners } from './listeners.js';
export type {
  ListenStoredOptions,
  StoredListenerSpec,
  StoredListenerFallback,
  StoredListenersEvents,
  DrainResult,
  DrainState,
} from './listeners.js';
