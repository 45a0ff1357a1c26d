// fdpass run: the supervisor (fdpass/supervisor) as a command, fit to be a
// container's PID 1 or a development server's runner.
import { writeFileSync, rmSync } from 'node:fs';
import { FdSocket } from '../index.js';
import {
  Supervisor,
  exitCode,
  parseListenerSpec,
  type ListenerSpec,
  type ReadyMode,
  type RestartPolicy,
} from '../protocols/supervisor/index.js';
import { ArgReader, UsageError, type Command } from './command.js';

const help = `Usage: fdpass run [-l SPEC[=NAME]]... [options] -- COMMAND [ARGS...]
       fdpass run --reload --control SOCKET

Run COMMAND with socket activation as systemd does it (the listeners as fds
3.., LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and a notify socket
(NOTIFY_SOCKET: READY=1, STATUS=, WATCHDOG=1, FDSTORE=1...), and replace it
without refusing a connection: on SIGHUP (or --reload) a new process starts
beside the old one, and the old one is stopped once the new one is ready.
A crash restarts it with backoff; the listeners stay open throughout.

Listeners (repeatable, passed in this order):
  -l, --listen SPEC[=NAME]   PORT, HOST:PORT, [IPV6]:PORT, unix:PATH or
                             unix:PATH,mode=0660; NAME goes to LISTEN_FDNAMES
                             (default "unknown")

Options:
  --ready notify|delay:TIME  ready on READY=1 (default), or once the process
                             has run for TIME (programs that never notify)
  --ready-timeout TIME       a new process not ready by then fails (60s)
  --drain-timeout TIME       SIGKILL a process this long after SIGTERM (10s)
  --watchdog TIME            WatchdogSec=: once ready, a process must send
                             WATCHDOG=1 this often or it is killed and
                             restarted (off)
  --restart always|on-failure|never
                             after an exit of its own (always)
  --fd-store-max N           fds the store holds, FDSTORE=1 (64)
  --watch PATH               reload when a file under PATH changes (repeatable)
  --watch-debounce TIME      one reload for changes this close (200ms)
  --control SOCKET           accept "reload" and "status" on a Unix socket
  --reload                   with --control: tell a running fdpass run to
                             reload; exit 0 once the new process serves, 1
                             if the reload failed (the old one still serves)
  --pid-file FILE            write our pid to FILE
  -q, --quiet                no log lines (errors only)
  -h, --help                 show this help

TIME is a number of seconds, or a number with ms, s or m. SIGHUP reloads;
SIGTERM and SIGINT stop the process (SIGTERM, then SIGKILL after the drain
timeout), then fdpass run exits with its status (128 + N for signal N);
SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded. As PID 1 it reaps
orphans. One log line per event on stderr. Errors exit 1 (2 for bad usage).`;

interface Options {
  listeners: ListenerSpec[];
  ready: ReadyMode;
  readyTimeout: number | undefined;
  drainTimeout: number | undefined;
  watchdog: number | undefined;
  restart: RestartPolicy | undefined;
  fdStoreMax: number | undefined;
  watch: string[];
  watchDebounce: number | undefined;
  control: string | undefined;
  reload: boolean;
  pidFile: string | undefined;
  quiet: boolean;
  command: string[];
}

/** A duration in ms: `2` (seconds), `500ms`, `2s`, `1.5m`. */
export function parseDuration(text: string, what: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new UsageError(`${what}: "${text}" is not a duration (like 500ms, 2s, 1m)`);
  const n = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (!Number.isFinite(n) || n > 2 ** 31 - 1) throw new UsageError(`${what}: ${text} is too long`);
  return Math.round(n);
}

function parseArgs(args: string[]): Options | 'help' {
  const o: Options = {
    listeners: [],
    ready: 'notify',
    readyTimeout: undefined,
    drainTimeout: undefined,
    watchdog: undefined,
    restart: undefined,
    fdStoreMax: undefined,
    watch: [],
    watchDebounce: undefined,
    control: undefined,
    reload: false,
    pidFile: undefined,
    quiet: false,
    command: [],
  };
  const a = new ArgReader(args);
  while (a.next()) {
    const { arg, flag } = a;
    if (arg === '--') {
      o.command = a.rest();
      break;
    }
    const value = (): string => a.value();
    switch (flag) {
      case '-h':
      case '--help':
        return 'help';
      case '-l':
      case '--listen':
        try {
          o.listeners.push(parseListenerSpec(value()));
        } catch (err) {
          throw new UsageError(`${flag}: ${(err as Error).message}`);
        }
        break;
      case '--ready': {
        const v = value();
        if (v === 'notify') o.ready = 'notify';
        else if (v.startsWith('delay:')) o.ready = { delay: parseDuration(v.slice(6), '--ready delay') };
        else throw new UsageError(`--ready must be "notify" or "delay:TIME", not "${v}"`);
        break;
      }
      case '--ready-timeout':
        o.readyTimeout = Math.max(1, parseDuration(value(), flag));
        break;
      case '--drain-timeout':
        o.drainTimeout = parseDuration(value(), flag);
        break;
      case '--watchdog':
        o.watchdog = parseDuration(value(), flag);
        break;
      case '--restart': {
        const v = value();
        if (v !== 'always' && v !== 'on-failure' && v !== 'never')
          throw new UsageError(`--restart must be always, on-failure or never, not "${v}"`);
        o.restart = v;
        break;
      }
      case '--fd-store-max': {
        const v = value();
        if (!/^[0-9]{1,4}$/.test(v) || Number(v) > 4096) throw new UsageError(`--fd-store-max must be a number from 0 to 4096, not "${v}"`);
        o.fdStoreMax = Number(v);
        break;
      }
      case '--watch':
        o.watch.push(value());
        break;
      case '--watch-debounce':
        o.watchDebounce = parseDuration(value(), flag);
        break;
      case '--control':
        o.control = value();
        break;
      case '--pid-file':
        o.pidFile = value();
        break;
      case '--reload':
        if (a.hasInlineValue) throw new UsageError('--reload takes no value');
        o.reload = true;
        break;
      case '-q':
      case '--quiet':
        o.quiet = true;
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
        // The command may follow without "--" when it does not start with "-".
        o.command = a.rest(true);
    }
  }
  if (o.reload) {
    if (o.control === undefined) throw new UsageError("--reload needs --control SOCKET (the running fdpass run's)");
    if (o.command.length > 0) throw new UsageError('--reload takes no command');
  } else if (o.command.length === 0) throw new UsageError('missing COMMAND (after --)');
  return o;
}

function say(line: string): void {
  process.stderr.write(`fdpass run: ${line}\n`);
}

/** fdpass run --reload: ask a running supervisor over its control socket. */
async function remoteReload(path: string): Promise<number> {
  const sock = await FdSocket.connect({ path });
  try {
    await sock.send('reload\n');
    const m = await sock.recv();
    const answer = m?.data.toString('utf8').trim() ?? 'failed: no answer';
    if (answer.startsWith('ok')) {
      say(answer.slice(4));
      return 0;
    }
    say(answer.replace(/^failed: /, ''));
    return 1;
  } finally {
    await sock.close();
  }
}

async function runCommand(args: string[]): Promise<number> {
  let o: Options | 'help';
  try {
    o = parseArgs(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    say(`${err.message}\n\n${help}`);
    return 2;
  }
  if (o === 'help') {
    console.log(help);
    return 0;
  }
  if (o.reload) {
    try {
      return await remoteReload(o.control!);
    } catch (err) {
      say(`cannot reach ${o.control}: ${(err as Error).message}`);
      return 1;
    }
  }
  const log = o.quiet ? null : say;
  let sup: Supervisor;
  try {
    sup = await Supervisor.start({
      command: o.command[0]!,
      args: o.command.slice(1),
      listeners: o.listeners,
      ready: o.ready,
      ...(o.readyTimeout !== undefined ? { readyTimeout: o.readyTimeout } : {}),
      ...(o.drainTimeout !== undefined ? { drainTimeout: o.drainTimeout } : {}),
      ...(o.watchdog !== undefined ? { watchdog: o.watchdog } : {}),
      ...(o.restart !== undefined ? { restart: o.restart } : {}),
      ...(o.fdStoreMax !== undefined ? { fdStoreMax: o.fdStoreMax } : {}),
      ...(o.watch.length ? { watch: o.watch } : {}),
      ...(o.watchDebounce !== undefined ? { watchDebounce: o.watchDebounce } : {}),
      ...(o.control !== undefined ? { control: o.control } : {}),
      log,
    });
  } catch (err) {
    say((err as Error).message);
    return 1;
  }
  if (o.pidFile) writeFileSync(o.pidFile, `${process.pid}\n`);
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGHUP', () => void sup.reload().catch(() => undefined)],
    ['SIGTERM', () => void sup.stop('SIGTERM')],
    ['SIGINT', () => void sup.stop('SIGTERM')],
  ];
  for (const s of ['SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const) handlers.push([s, () => sup.signal(s)]);
  for (const [s, h] of handlers) process.on(s, h);
  const status = await new Promise<Parameters<typeof exitCode>[0]>((resolve) => sup.once('stopped', resolve));
  for (const [s, h] of handlers) process.off(s, h);
  if (o.pidFile) rmSync(o.pidFile, { force: true });
  const code = exitCode(status);
  if (log) log(`exiting with ${code}`);
  return code;
}

export const run: Command = {
  name: 'run',
  summary: 'run a server with socket activation; reload and restart it without a gap',
  run: runCommand,
};
