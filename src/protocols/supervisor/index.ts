// fdpass/supervisor: run any server program with socket activation and a
// notify socket, as systemd does, and restart or reload it without refusing
// a connection. What `fdpass run` is made of.
export { Supervisor, exitCode, resolveCommand } from './supervisor.js';
export type { SupervisorOptions, SupervisorEvents, ExitStatus, ReadyMode, RestartPolicy } from './supervisor.js';
export { parseListenerSpec } from './listeners.js';
export type { ListenerSpec, OpenListener } from './listeners.js';
export { NOTIFY_MAX_BYTES } from './notify.js';
