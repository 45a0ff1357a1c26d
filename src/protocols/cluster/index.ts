/**
 * fdpass/cluster: a primary accepts connections in batches and hands their
 * fds to worker processes over SCM_RIGHTS; each worker's net.Server (http,
 * https, tls) takes them as if it had accepted them. Or, with schedule
 * 'reuseport', the primary passes each worker its own socket of a
 * SO_REUSEPORT group and steps in only when a worker goes. Works with
 * node:cluster workers and plain child processes; no connection is lost when
 * a worker dies.
 * @packageDocumentation
 */
export { ClusterPrimary } from './primary.js';
export type { ClusterPrimaryEvents, ClusterWorkerExit, ClusterWorkerInfo, ForkedWorker, PrimaryOptions } from './primary.js';
export { serve, isClusterWorker } from './worker.js';
export type { ServeOptions } from './worker.js';
export type { ClusterListenOptions } from './listen.js';
export type { ListenerAddress } from './protocol.js';
export type { DrainOptions, ReloadOptions } from './reload.js';
