// fdpass recvtty: the counterpart of runc's own test tool recvtty. It listens
// on a console socket and, in 'single' mode, connects the first container's
// terminal to ours; in 'null' mode it drains every console it gets.
import { writeFileSync } from 'node:fs';
import { listenConsoleSocket, PtyStream, type ConsoleListener, type ReceivedConsole } from '../protocols/runc/index.js';
// The window size of our own terminal, which may be stdin (Node's tty gives it
// for stdout and stderr only): the one thing the CLI takes from below the
// public entry points.
// eslint-disable-next-line no-restricted-imports
import { native } from '../base/native.js';
import type { FdPassError, PeerCredentials } from '../index.js';
import { ArgReader, UsageError, type Command } from './command.js';

const help = `Usage: fdpass recvtty [--mode single|null] [--pid-file FILE] [--no-stdin] SOCKET

Listen on SOCKET for runc's console socket (runc run|create --console-socket
SOCKET) and receive the pty master of the container's terminal.

Options:
  --mode single    (default) take one console: copy its output to stdout and
                   stdin to it (stdin in raw mode when it is a terminal); exit 0
                   when the container's terminal closes; the container's
                   terminal takes the size of ours, at start and whenever
                   ours changes (SIGWINCH)
  --mode null      take consoles forever and discard their output, so detached
                   containers never block on a full terminal; stop with SIGTERM
                   or SIGINT (exit 0)
  --pid-file FILE  write our pid to FILE once listening
  --no-stdin       do not read stdin (single mode)
  -h, --help       show this help

The socket file is created with mode 0600 and removed on exit. Errors print
one line on stderr and exit 1 (2 for bad usage); a signal in single mode exits
128 + its number.`;

interface Options {
  mode: 'single' | 'null';
  pidFile: string | undefined;
  stdin: boolean;
  socket: string;
}

function parseArgs(args: string[]): Options | 'help' {
  let mode: 'single' | 'null' = 'single';
  let pidFile: string | undefined;
  let stdin = true;
  const positional: string[] = [];
  const a = new ArgReader(args);
  while (a.next()) {
    const { arg, flag } = a;
    const value = (): string => a.value();
    if (flag === '-h' || flag === '--help') return 'help';
    else if (flag === '--mode') {
      const m = value();
      if (m !== 'single' && m !== 'null') throw new UsageError(`--mode must be "single" or "null", not "${m}"`);
      mode = m;
    } else if (flag === '--pid-file') {
      pidFile = value();
      if (pidFile === '') throw new UsageError('--pid-file needs a file name');
    } else if (flag === '--no-stdin' && !a.hasInlineValue) stdin = false;
    else if (flag === '--') {
      positional.push(...a.rest());
      break;
    } else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 1) throw new UsageError(positional.length === 0 ? 'missing SOCKET' : 'too many arguments');
  return { mode, pidFile, stdin, socket: positional[0]! };
}

function say(line: string): void {
  process.stderr.write(`fdpass recvtty: ${line}\n`);
}

function describePeer(peer: PeerCredentials | null): string {
  return peer ? ` from pid ${peer.pid}` : '';
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_NUMBERS: Record<(typeof SIGNALS)[number], number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** Resolves with the first of SIGINT, SIGTERM, SIGHUP; dispose() removes the handlers. */
function onSignal(): { signal: Promise<(typeof SIGNALS)[number]>; dispose: () => void } {
  let handlers: [string, () => void][] = [];
  const signal = new Promise<(typeof SIGNALS)[number]>((resolve) => {
    handlers = SIGNALS.map((s) => [s, () => resolve(s)]);
    for (const [s, h] of handlers) process.on(s, h);
  });
  return { signal, dispose: () => handlers.forEach(([s, h]) => process.off(s, h)) };
}

/** Flush what stdout holds before we report the exit code. */
function flushStdout(): Promise<void> {
  return new Promise((resolve) => process.stdout.write('', () => resolve()));
}

async function single(listener: ConsoleListener, options: Options, signal: Promise<string>): Promise<number> {
  const first = await Promise.race([listener.next(), signal]);
  if (first === null || typeof first === 'string') {
    return typeof first === 'string' ? 128 + SIGNAL_NUMBERS[first as keyof typeof SIGNAL_NUMBERS] : 1;
  }
  // One console is all we take: let others use the socket path.
  await listener.close();
  const pty = new PtyStream(first.fd);
  const resize = followSize(pty);
  const stdin = process.stdin;
  const raw = options.stdin && stdin.isTTY === true;
  const restore = (): void => {
    if (raw && stdin.isRaw) stdin.setRawMode(false);
  };
  process.on('exit', restore);
  try {
    if (raw) stdin.setRawMode(true);
    const done = new Promise<number>((resolve) => {
      pty.on('end', () => resolve(0));
      pty.on('error', (err) => {
        say(`the console failed: ${err.message}`);
        resolve(1);
      });
    });
    pty.pipe(process.stdout, { end: false });
    if (options.stdin) {
      stdin.on('error', () => stdin.unpipe(pty));
      stdin.pipe(pty, { end: false });
    }
    const result = await Promise.race([done, signal]);
    await flushStdout();
    return typeof result === 'number' ? result : 128 + SIGNAL_NUMBERS[result as keyof typeof SIGNAL_NUMBERS];
  } finally {
    resize.dispose();
    restore();
    process.off('exit', restore);
    if (options.stdin) {
      stdin.unpipe(pty);
      stdin.destroy();
    }
    pty.unpipe();
    pty.destroy();
  }
}

/** Our own terminal (stdin, stdout or stderr, as containerd/console finds it), or -1. */
function ourTerminal(): number {
  for (const fd of [0, 1, 2]) if (native.getWindowSize(fd) >= 0) return fd;
  return -1;
}

/**
 * Give the container's terminal the size of ours, now and on every SIGWINCH,
 * as runc's tty.go does. Nothing happens when we have no terminal.
 */
function followSize(pty: PtyStream): { dispose: () => void } {
  const tty = ourTerminal();
  if (tty < 0) return { dispose: () => {} };
  const update = (): void => {
    const size = native.getWindowSize(tty);
    if (size < 0 || pty.destroyed) return;
    try {
      pty.resize(size >>> 16, size & 0xffff);
    } catch (err) {
      say(`cannot resize the console: ${(err as Error).message}`);
    }
  };
  update();
  process.on('SIGWINCH', update);
  return { dispose: () => process.off('SIGWINCH', update) };
}

async function drainAll(listener: ConsoleListener, signal: Promise<string>): Promise<number> {
  const open = new Set<PtyStream>();
  const drain = (c: ReceivedConsole): void => {
    let pty: PtyStream;
    try {
      pty = new PtyStream(c.fd);
    } catch (err) {
      say(`cannot read a console${describePeer(c.peer)}: ${(err as Error).message}`);
      return;
    }
    open.add(pty);
    pty.on('error', (err) => say(`a console failed${describePeer(c.peer)}: ${err.message}`));
    pty.on('close', () => open.delete(pty));
    pty.on('end', () => pty.destroy());
    pty.resume();
  };
  const accepting = (async () => {
    for await (const c of listener) drain(c);
  })();
  await Promise.race([signal, accepting]);
  await listener.close();
  await accepting;
  for (const pty of open) pty.destroy();
  return 0;
}

async function run(args: string[]): Promise<number> {
  let options: Options;
  try {
    const parsed = parseArgs(args);
    if (parsed === 'help') {
      console.log(help);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    say(`${err.message} (see "fdpass recvtty --help")`);
    return 2;
  }
  const signals = onSignal();
  let listener: ConsoleListener;
  try {
    listener = await listenConsoleSocket(options.socket);
  } catch (err) {
    signals.dispose();
    say(`cannot listen on ${options.socket}: ${(err as Error).message}`);
    return 1;
  }
  listener.on('error', (err: FdPassError, peer) => say(`ignored a connection${describePeer(peer)}: ${err.message}`));
  try {
    if (options.pidFile !== undefined) {
      try {
        writeFileSync(options.pidFile, `${process.pid}\n`);
      } catch (err) {
        say(`cannot write the pid file: ${(err as Error).message}`);
        return 1;
      }
    }
    return options.mode === 'single' ? await single(listener, options, signals.signal) : await drainAll(listener, signals.signal);
  } finally {
    signals.dispose();
    await listener.close();
  }
}

export const recvtty: Command = {
  name: 'recvtty',
  summary: "receive a container's terminal from runc's --console-socket",
  run,
};
