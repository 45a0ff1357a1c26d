// The exec shim where there is no shell (a container image without
// /bin/sh): the supervisor runs `node exec-shim.js COMMAND ARGS...` with the
// listeners at fds 3.. and this sets the variables named in
// FDPASS_EXEC_OWN_PID (LISTEN_PID, WATCHDOG_PID) to its own pid, then
// becomes the program with execve(2), which keeps the pid and every fd not
// marked close-on-exec: the listeners, as systemd's own exec does it. The shell form is `LISTEN_PID=$$; exec "$0"
// "$@"` (supervisor.ts).
import { constants } from 'node:os';
import { native } from '../internal.js';

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stderr.write('fdpass exec shim: no command\n');
  process.exit(2);
}
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
for (const name of (env.FDPASS_EXEC_OWN_PID ?? '').split(',')) if (name !== '') env[name] = String(process.pid);
delete env.FDPASS_EXEC_OWN_PID;
// Node marks fds 0 to 16 close-on-exec as it starts (stdio included): what
// the program must inherit, stdio and the LISTEN_FDS fds from 3 on, is
// marked inheritable again (setFlags leaves O_NONBLOCK as it is).
const inherited = 3 + (Number(env.LISTEN_FDS) || 0);
for (let fd = 0; fd < inherited; fd++) native.setFlags(fd, 0, -1);
const entries = Object.entries(env).map(([k, v]) => `${k}=${v}`);
const strings = Buffer.from([command, command, ...args, ...entries].map((s) => `${s}\0`).join(''));
const r = native.execve(strings, 1 + args.length, entries.length);
// Only a failure comes back: the shell's exit codes (126 cannot run it, 127 not found).
process.stderr.write(`fdpass exec shim: cannot run ${command}: errno ${-r}\n`);
process.exit(-r === constants.errno.ENOENT ? 127 : 126);
