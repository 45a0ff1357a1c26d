// Supervisor: runs one server program with socket activation and a notify
// socket, as systemd would, and replaces it without a gap. It owns the
// listeners for its whole life; each process gets copies of them (fds 3..),
// and of the fds it stored (FDSTORE=1). A reload starts the new process
// beside the old one, waits until it is ready (READY=1, or a delay), then
// stops the old one: connections that arrive meanwhile are accepted by
// whichever process calls accept(2) first, or wait in the backlog; none is
// refused. A new process that fails is stopped and the old one keeps serving.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, FdPassError, discardFds, FdServer, runtime, unsupportedRuntime, type FdSocket } from '../internal.js';

import { FD_NAME, closeListeners, openListeners, type OpenListener } from './listeners.js';
import { NotifyServer, type Notification } from './notify.js';
import { Reaper } from './reaper.js';
import { FdStore } from './store.js';
import {
  checkMs,
  checkSupervisorOptions,
  type ReadyMode,
  type RestartPolicy,
  type SupervisorEvents,
  type SupervisorOptions,
} from './options.js';
import { Child, EXEC_SHIM, defaultShell, describeExit, errnoName, parentOf, resolveCommand, type ExitStatus } from './child.js';

export { exitCode, resolveCommand } from './child.js';
export type { ExitStatus } from './child.js';
export type { ReadyMode, RestartPolicy, SupervisorEvents, SupervisorOptions } from './options.js';

/** Run a server program and replace it without a gap; see SupervisorOptions. */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  /** The listening sockets this supervisor owns, in the order the processes get them (fds 3..). */
  readonly sockets: readonly OpenListener[];
  /** NOTIFY_SOCKET as the processes see it. */
  readonly notifySocket: string;
  readonly #command: string;
  readonly #args: readonly string[];
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #cwd: string;
  readonly #ready: ReadyMode;
  readonly #readyTimeout: number;
  readonly #drainTimeout: number;
  readonly #watchdog: number;
  readonly #restart: RestartPolicy;
  readonly #restartDelay: number;
  readonly #restartDelayMax: number;
  readonly #stdio: 'inherit' | 'ignore';
  readonly #shell: string | null;
  readonly #log: (line: string) => void;
  readonly #notify: NotifyServer;
  readonly #spawned = new Set<number>();
  readonly #reaper: Reaper | null;
  /** The fd store: name -> fds (the supervisor's), in the order they came. */
  readonly #store: FdStore;
  readonly #children = new Set<Child>();
  #current: Child | null = null;
  #reload: Promise<number> | null = null;
  #stopping: Promise<ExitStatus | null> | null = null;
  #lastExit: ExitStatus | null = null;
  #delay: number;
  #restartTimer: NodeJS.Timeout | null = null;
  #stableTimer: NodeJS.Timeout | null = null;
  #watchers: FSWatcher[] = [];
  #watchTimer: NodeJS.Timeout | null = null;
  #watchDebounce: number;
  #control: FdServer | null = null;
  #status = '';

  /** Use Supervisor.start(). */
  private constructor(
    options: SupervisorOptions,
    command: string,
    listeners: OpenListener[],
    notify: NotifyServer,
    reaper: Reaper | null,
    spawned: Set<number>,
  ) {
    super();
    this.sockets = listeners;
    this.#notify = notify;
    this.notifySocket = notify.address;
    this.#command = command;
    this.#args = options.args ?? [];
    this.#env = options.env ?? process.env;
    this.#cwd = options.cwd ?? process.cwd();
    this.#ready = options.ready ?? 'notify';
    this.#readyTimeout = checkMs(options.readyTimeout, 'options.readyTimeout', 60_000, 1);
    this.#drainTimeout = checkMs(options.drainTimeout, 'options.drainTimeout', 10_000);
    this.#watchdog = checkMs(options.watchdog, 'options.watchdog', 0);
    this.#restart = options.restart ?? 'always';
    this.#restartDelay = checkMs(options.restartDelay, 'options.restartDelay', 100);
    this.#restartDelayMax = checkMs(options.restartDelayMax, 'options.restartDelayMax', 30_000);
    this.#delay = this.#restartDelay;
    this.#store = new FdStore(options.fdStoreMax ?? 64, (l) => this.#log(l));
    this.#watchDebounce = checkMs(options.watchDebounce, 'options.watchDebounce', 200);
    this.#stdio = options.stdio ?? 'inherit';
    this.#shell = options.shell ?? null;
    this.#log = options.log ?? (() => undefined);
    this.#reaper = reaper;
    this.#spawned = spawned;
  }

  /**
   * Open the listeners and the notify socket, and start the program. Resolves
   * once it runs (not once it is ready: see the 'ready' event). Throws
   * TypeError/RangeError for bad options, ERR_FDPASS_NO_COMMAND when the
   * command is not found, and the system error of a listener that cannot be
   * opened (EADDRINUSE...), having closed whatever it opened.
   */
  static async start(options: SupervisorOptions): Promise<Supervisor> {
    const specs = checkSupervisorOptions(options);
    const env = options.env ?? process.env;
    const cwd = options.cwd ?? process.cwd();
    const path = resolveCommand(options.command, env, cwd);
    // Without a shell, Node runs the exec shim (process.execPath exec-shim.js):
    // Bun and Deno would take it for something else.
    const shell = options.shell === undefined ? defaultShell() : options.shell;
    if (shell === null && runtime.name !== 'node') {
      throw unsupportedRuntime(`without /bin/sh (or options.shell) the supervisor starts each process through Node, not ${runtime.name}`);
    }
    const listeners = openListeners(specs);
    let notify: NotifyServer | null = null;
    let sup: Supervisor | null = null;
    try {
      const spawned = new Set<number>();
      notify = new NotifyServer({
        allow: (pid) => sup !== null && sup.#childOf(pid) !== undefined,
        message: (n) => sup!.#onNotify(n),
        refused: (pid, reason) => {
          if (sup) sup.#refused(pid, reason);
        },
        failed: (err) => {
          if (sup) sup.#log(`notify socket: ${err.message}`);
        },
      });
      const reap = options.reapOrphans ?? process.pid === 1;
      const reaper = reap ? new Reaper(spawned) : null;
      sup = new Supervisor({ ...options, shell }, path, listeners, notify, reaper, spawned);
      if (options.control !== undefined) await sup.#listenControl(options.control);
      for (const l of listeners) sup.#log(`listening on ${l.address} as "${l.name}" (fd ${l.fd})`);
      sup.#startChild('started');
      reaper?.start(process.pid !== 1);
      if (options.watch?.length) sup.#watch(options.watch);
      return sup;
    } catch (err) {
      if (sup) await sup.stop();
      else {
        notify?.close();
        closeListeners(listeners);
      }
      throw err;
    }
  }

  /** The pid of the process that serves (or starts, or will start; its MAINPID= once sent), or null. */
  get pid(): number | null {
    return this.#current?.alive ? this.#current.mainPid : null;
  }

  /** The last STATUS= the serving process sent. */
  get status(): string {
    return this.#status;
  }

  /** Names and counts of the fds in the store. */
  get stored(): Record<string, number> {
    return Object.fromEntries(this.#store.entries().map(([k, v]) => [k, v.length]));
  }

  /**
   * Replace the process without a gap: start a new one with the same
   * listeners and store, wait until it is ready, then stop the old one
   * (SIGTERM, SIGKILL after drainTimeout). Resolves with the new pid. If the
   * new one exits or is not ready within readyTimeout, it is stopped, the old
   * one keeps serving, and this rejects with ERR_FDPASS_RELOAD_FAILED. Calls
   * during a reload share it.
   */
  reload(): Promise<number> {
    if (this.#stopping) return Promise.reject(new FdPassError(ErrorCodes.RELOAD_FAILED, 'reload: the supervisor is stopping'));
    this.#reload ??= this.#doReload().finally(() => {
      this.#reload = null;
    });
    return this.#reload;
  }

  async #doReload(): Promise<number> {
    const old = this.#current?.alive ? this.#current : null;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    this.#log(old ? `reloading: starting a new process beside pid ${old.pid}` : 'reloading: starting a new process');
    let next: Child;
    try {
      next = this.#spawn('reload');
    } catch (err) {
      throw this.#reloadFailed(`the new process did not start: ${(err as Error).message}`, old, err);
    }
    if (!old) this.#current = next;
    const outcome = await next.outcome.promise;
    if (outcome !== 'ready') {
      if (next.alive) await this.#stopChild(next, 'SIGTERM');
      if (this.#current === next) this.#current = null;
      const err = this.#reloadFailed(outcome.replace('{pid}', `pid ${next.pid}`), old?.alive ? old : null);
      if (!this.#stopping && !this.#current?.alive) this.#scheduleRestart();
      throw err;
    }
    this.#current = next;
    const ms = Math.round(performance.now() - next.startedAt);
    if (old?.alive) {
      this.#log(`reloaded: pid ${next.pid} ready after ${ms} ms; stopping pid ${old.pid} (SIGTERM)`);
      void this.#stopChild(old, 'SIGTERM');
    } else this.#log(`reloaded: pid ${next.pid} ready after ${ms} ms`);
    this.emit('reloaded', next.pid);
    return next.pid;
  }

  #reloadFailed(reason: string, old: Child | null, cause?: unknown): FdPassError {
    const err = new FdPassError(
      ErrorCodes.RELOAD_FAILED,
      `reload failed: ${reason}; ${old ? `rolled back: pid ${old.pid} still serving` : 'no process serves'}`,
      cause !== undefined ? { cause } : undefined,
    );
    this.#log(err.message);
    this.emit('reloadFailed', err);
    return err;
  }

  /** Start the serving process (the first, or after a crash). */
  #startChild(why: string): void {
    const child = this.#spawn(why);
    this.#current = child;
    void child.outcome.promise.then((outcome) => {
      // Not ready in time: stop it; its exit restarts it (a crash).
      if (outcome !== 'ready' && child.alive && !this.#stopping) {
        this.#log(outcome.replace('{pid}', `pid ${child.pid}`));
        this.#kill(child, 'SIGTERM');
      }
    });
  }

  #spawn(why = ''): Child {
    const fds: number[] = this.sockets.map((l) => l.fd);
    const names: string[] = this.sockets.map((l) => l.name);
    for (const [name, stored] of this.#store.entries()) {
      for (const fd of stored) {
        fds.push(fd);
        names.push(name);
      }
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.#env)) if (v !== undefined) env[k] = v;
    for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'WATCHDOG_PID', 'WATCHDOG_USEC']) delete env[k];
    // The variables that must hold the program's own pid, known only once
    // it runs: set by the shell, or the shim, right before its exec.
    const ownPid: string[] = [];
    if (fds.length > 0) {
      env.LISTEN_FDS = String(fds.length);
      env.LISTEN_FDNAMES = names.join(':');
      ownPid.push('LISTEN_PID');
    }
    if (this.#watchdog > 0) {
      env.WATCHDOG_USEC = String(this.#watchdog * 1000);
      ownPid.push('WATCHDOG_PID');
    }
    env.NOTIFY_SOCKET = this.notifySocket;
    let file: string;
    let argv: string[];
    if (this.#shell !== null) {
      file = this.#shell;
      argv = ['-c', [...ownPid.map((v) => `${v}=$$; export ${v};`), 'exec "$0" "$@"'].join(' '), this.#command, ...this.#args];
    } else {
      file = process.execPath;
      argv = [EXEC_SHIM, this.#command, ...this.#args];
      env.FDPASS_EXEC_OWN_PID = ownPid.join(',');
    }
    const io = this.#stdio;
    const proc = spawn(file, argv, {
      cwd: this.#cwd,
      env,
      // Each fd lands at its index: 3, 4, ... without close-on-exec.
      stdio: [io, io, io, ...fds],
    });
    if (proc.pid === undefined) {
      proc.on('error', () => undefined);
      throw new FdPassError(ErrorCodes.NO_COMMAND, `cannot start ${file}, which starts the program with LISTEN_PID set`);
    }
    const child = new Child(proc, proc.pid);
    this.#spawned.add(child.pid);
    this.#children.add(child);
    proc.on('error', () => undefined);
    proc.on('exit', (code, signal) => this.#spawnedExited(child, { pid: child.pid, code, signal }));
    this.#log(`${why ? `${why}: ` : ''}pid ${child.pid}: ${[this.#command, ...this.#args].join(' ')}`);
    this.emit('spawn', child.pid);
    if (this.#ready === 'notify') this.#armReadyTimer(child, this.#readyTimeout);
    else {
      child.readyTimer = setTimeout(() => this.#markReady(child), this.#ready.delay);
    }
    // Armed once the process is ready (or pings first): starting up is the
    // ready timeout's business.
    child.watchdogMs = this.#watchdog;
    return child;
  }

  #armReadyTimer(child: Child, ms: number): void {
    if (child.readyTimer) clearTimeout(child.readyTimer);
    child.readyTimer = setTimeout(() => {
      child.readyTimer = null;
      if (child.state === 'starting') child.outcome.resolve(`{pid} was not ready (READY=1) within ${ms} ms`);
    }, ms);
  }

  #markReady(child: Child): void {
    if (child.state !== 'starting') return;
    child.state = 'ready';
    if (child.readyTimer) clearTimeout(child.readyTimer);
    child.readyTimer = null;
    if (child === this.#current && !this.#reload) {
      this.#log(`pid ${child.pid} ready after ${Math.round(performance.now() - child.startedAt)} ms`);
    }
    // A process that stays up a while resets the restart delay.
    if (this.#stableTimer) clearTimeout(this.#stableTimer);
    this.#stableTimer = setTimeout(() => (this.#delay = this.#restartDelay), 10_000);
    this.#stableTimer.unref();
    if (child.watchdogMs > 0 && !child.watchdogTimer) this.#armWatchdog(child, child.watchdogMs);
    child.outcome.resolve('ready');
    this.emit('ready', child.pid);
  }

  #armWatchdog(child: Child, ms: number): void {
    child.watchdogMs = ms;
    if (child.watchdogTimer) clearTimeout(child.watchdogTimer);
    child.watchdogTimer = null;
    if (ms <= 0 || !child.alive || child.state === 'stopping') return;
    child.watchdogTimer = setTimeout(() => {
      child.watchdogTimer = null;
      if (!child.alive || child.state === 'stopping') return;
      this.#log(`watchdog: pid ${child.pid} sent no WATCHDOG=1 within ${ms} ms; killing it (SIGABRT)`);
      this.#kill(child, 'SIGABRT');
    }, ms);
  }

  /** Signal a process (and its MAINPID=), and SIGKILL it after drainTimeout. */
  #kill(child: Child, signal: NodeJS.Signals): void {
    child.signal(signal);
    if (child.killTimer) return;
    child.killTimer = setTimeout(() => {
      if (!child.alive) return;
      this.#log(`pid ${child.pid} still running ${this.#drainTimeout} ms after ${signal}: SIGKILL`);
      child.signal('SIGKILL');
    }, this.#drainTimeout);
  }

  // With MAINPID= naming another process, the service ends with that one:
  // the spawned process may exit first (a launcher, a double fork), and if
  // the main process ends first, the spawned one is stopped with it.
  #spawnedExited(child: Child, status: ExitStatus): void {
    child.spawnedExit = status;
    if (!child.mainRuns) return this.#onExit(child, child.mainExit ?? status);
    this.#log(`pid ${child.pid} ${describeExit(status)}; its main process, pid ${child.mainPid}, runs on`);
  }

  #mainExited(child: Child, status: ExitStatus): void {
    if (child.spawnedExit) return this.#onExit(child, status);
    child.mainExit = status;
    this.#log(`main process pid ${status.pid} ${describeExit(status)}; stopping pid ${child.pid} with it`);
    this.#kill(child, 'SIGTERM');
  }

  /** Stop a process that no longer serves: SIGTERM, then SIGKILL after drainTimeout. */
  async #stopChild(child: Child, signal: NodeJS.Signals): Promise<ExitStatus> {
    if (child.alive && child.state !== 'stopping') {
      child.state = 'stopping';
      if (child.watchdogTimer) clearTimeout(child.watchdogTimer);
      child.outcome.resolve('{pid} was stopped');
      this.#kill(child, signal);
    }
    return child.exited.promise;
  }

  #onExit(child: Child, status: ExitStatus): void {
    const wasStopping = child.state === 'stopping';
    const wasReady = child.state === 'ready';
    child.state = 'exited';
    child.exitStatus = status;
    child.clearTimers();
    child.release();
    this.#children.delete(child);
    this.#spawned.delete(child.pid);
    this.#reaper?.reap();
    child.outcome.resolve(`{pid} ${describeExit(status)}${wasReady ? '' : ' before it was ready'}`);
    if (child === this.#current) this.#lastExit = status;
    this.#log(`pid ${status.pid} ${describeExit(status)}`);
    this.emit('exit', status);
    child.exited.resolve(status);
    if (this.#stopping || wasStopping || child !== this.#current) return;
    // The serving process died on its own. A reload in progress takes over
    // (its failure schedules the restart); else start again after a delay.
    if (this.#reload) return;
    this.#current = null;
    const failed = status.signal !== null || status.code !== 0;
    if (this.#restart === 'always' || (this.#restart === 'on-failure' && failed)) this.#scheduleRestart();
    else void this.stop();
  }

  #scheduleRestart(): void {
    if (this.#restartTimer || this.#stopping) return;
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#restartDelayMax);
    this.#log(`restarting in ${delay} ms`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping || this.#current?.alive) return;
      try {
        this.#startChild('restarted');
      } catch (err) {
        this.#log(`restart failed: ${(err as Error).message}`);
        this.#scheduleRestart();
      }
    }, delay);
  }

  /** The supervised process `pid` is, or descends from (NotifyAccess=all). */
  #childOf(pid: number): Child | undefined {
    for (let p = pid, depth = 0; p > 1 && depth < 32; p = parentOf(p), depth++) {
      for (const c of this.#children) if (c.pid === p || c.mainPid === p) return c;
    }
    return undefined;
  }

  #refused(pid: number, reason: string): void {
    this.#log(`refused a notification from pid ${pid}: ${reason}`);
    this.emit('refused', pid, reason);
  }

  #onNotify(n: Notification): void {
    const { fields, fds } = n;
    const child = this.#childOf(n.pid);
    let kept = false;
    const refuse = (reason: string): void => this.#refused(n.pid, reason);
    try {
      if (!child) return refuse('the sender is not a supervised process');
      const name = fields.get('FDNAME');
      if (name !== undefined && !FD_NAME.test(name)) return refuse(`FDNAME=${JSON.stringify(name.slice(0, 60))} is not a valid name`);
      if (fields.get('FDSTOREREMOVE') === '1') {
        if (name === undefined) return refuse('FDSTOREREMOVE=1 without FDNAME=');
        const gone = this.#store.remove(name);
        if (gone === 0) this.#log(`pid ${n.pid}: FDSTOREREMOVE of "${name}": nothing stored under that name`);
        else this.#log(`pid ${n.pid}: removed ${gone} fd(s) "${name}" from the store`);
      }
      if (fields.get('BARRIER') === '1') {
        // Everything sent before was handled: closing the fd (below) says so.
        if (fds.length !== 1) return refuse(`BARRIER=1 with ${fds.length} fds (needs exactly one)`);
      } else if (fields.get('FDSTORE') === '1') {
        if (fds.length === 0) return refuse('FDSTORE=1 without fds');
        if (this.#store.count + fds.length > this.#store.max) {
          return refuse(
            `FDSTORE=1 with ${fds.length} fd(s): the store holds ${this.#store.count} of at most ${this.#store.max}; closed them`,
          );
        }
        const key = name ?? 'stored';
        this.#store.add(key, fds, fields.get('FDPOLL') !== '0');
        kept = true;
        this.#log(`pid ${n.pid}: stored ${fds.length} fd(s) as "${key}" (${this.#store.count} in the store)`);
      } else if (fds.length > 0) return refuse(`${fds.length} fd(s) without FDSTORE=1 or BARRIER=1; closed them`);
      const mainPid = fields.get('MAINPID');
      if (mainPid !== undefined) {
        const pid = /^[1-9][0-9]{0,9}$/.test(mainPid) ? Number(mainPid) : 0;
        if (pid === 0 || this.#childOf(pid) !== child) refuse(`MAINPID=${mainPid} is not a process of pid ${child.pid}`);
        else if (pid !== child.mainPid) {
          if (child.follow(pid, (st) => this.#mainExited(child, st))) this.#log(`pid ${child.pid}: main process is now pid ${pid}`);
          else refuse(`MAINPID=${mainPid}: no such process`);
        }
      }
      const status = fields.get('STATUS');
      if (status !== undefined) {
        if (child === this.#current) this.#status = status;
        this.#log(`pid ${child.pid}: status: ${status}`);
        this.emit('status', child.pid, status);
      }
      const errno = fields.get('ERRNO');
      if (errno !== undefined)
        this.#log(`pid ${child.pid}: ERRNO=${errno}${/^[0-9]+$/.test(errno) ? ` (${errnoName(Number(errno))})` : ''}`);
      if (fields.get('RELOADING') === '1') this.#log(`pid ${child.pid}: reloading its configuration`);
      if (fields.get('STOPPING') === '1') this.#log(`pid ${child.pid}: stopping`);
      const extend = fields.get('EXTEND_TIMEOUT_USEC');
      if (extend !== undefined) {
        const usec = /^[0-9]{1,15}$/.test(extend) ? Number(extend) : -1;
        if (usec < 0) refuse(`EXTEND_TIMEOUT_USEC=${extend} is not a number`);
        else if (child.state === 'starting' && this.#ready === 'notify') this.#armReadyTimer(child, Math.max(1, Math.ceil(usec / 1000)));
      }
      const wdUsec = fields.get('WATCHDOG_USEC');
      if (wdUsec !== undefined) {
        const usec = /^[0-9]{1,15}$/.test(wdUsec) ? Number(wdUsec) : -1;
        if (usec < 0) refuse(`WATCHDOG_USEC=${wdUsec} is not a number`);
        else this.#armWatchdog(child, Math.ceil(usec / 1000));
      }
      const wd = fields.get('WATCHDOG');
      if (wd === '1') this.#armWatchdog(child, child.watchdogMs);
      else if (wd === 'trigger') {
        this.#log(`watchdog: pid ${child.pid} triggered it; killing it (SIGABRT)`);
        this.#kill(child, 'SIGABRT');
      }
      if (fields.get('READY') === '1' && this.#ready === 'notify') this.#markReady(child);
    } finally {
      if (!kept) discardFds(fds);
    }
  }

  #watch(paths: readonly string[]): void {
    const onChange = (file: string | null): void => {
      if (file && /(^|\/)(node_modules|\.git)(\/|$)/.test(file)) return;
      if (this.#watchTimer) clearTimeout(this.#watchTimer);
      this.#watchTimer = setTimeout(() => {
        this.#watchTimer = null;
        this.#log(`change in ${file ?? 'a watched path'}`);
        this.reload().catch(() => undefined);
      }, this.#watchDebounce);
    };
    for (const p of paths) {
      const path = isAbsolute(p) ? p : resolve(this.#cwd, p);
      const dir = statSync(path).isDirectory();
      const w = watch(path, { recursive: dir }, (_event, file) => onChange(file === null ? path : String(file)));
      w.on('error', (err) => this.#log(`watch ${path}: ${err.message}`));
      this.#watchers.push(w);
    }
  }

  async #listenControl(path: string): Promise<void> {
    const server = await FdServer.listen({ path, mode: 0o600 });
    this.#control = server;
    server.on('connection', (sock) => void this.#onControl(sock));
    server.on('error', (err) => this.#log(`control socket: ${err.message}`));
  }

  async #onControl(sock: FdSocket): Promise<void> {
    try {
      const m = await sock.recv({ maxBytes: 256, maxFds: 0 });
      const cmd = m?.data.toString('utf8').trim();
      let answer: string;
      if (cmd === 'reload') {
        try {
          answer = `ok: pid ${await this.reload()} serves\n`;
        } catch (err) {
          answer = `failed: ${(err as Error).message}\n`;
        }
      } else if (cmd === 'status') answer = `ok: pid ${this.pid ?? 'none'}${this.#status ? `: ${this.#status}` : ''}\n`;
      else answer = `failed: unknown command ${JSON.stringify(cmd ?? '')} (reload, status)\n`;
      await sock.send(answer);
    } catch {
      // the client went away
    } finally {
      await sock.close();
    }
  }

  /** Forward a signal to the serving process. */
  signal(signal: NodeJS.Signals): void {
    if (this.#current?.alive) this.#current.signal(signal);
  }

  /**
   * Stop: SIGTERM (or `signal`) to every process, SIGKILL after
   * drainTimeout; then close the listeners, the store and the sockets.
   * Resolves with how the serving process ended (null if none ran).
   */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus | null> {
    this.#stopping ??= this.#doStop(signal);
    return this.#stopping;
  }

  async #doStop(signal: NodeJS.Signals): Promise<ExitStatus | null> {
    for (const t of [this.#restartTimer, this.#watchTimer, this.#stableTimer]) if (t) clearTimeout(t);
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    const current = this.#current;
    if (current?.alive) this.#log(`stopping: ${signal} to pid ${current.pid}`);
    await Promise.all([...this.#children].map((c) => this.#stopChild(c, signal)));
    const status = current?.exitStatus ?? this.#lastExit;
    this.#notify.close();
    closeListeners(this.sockets);
    this.#store.clear();
    await this.#control?.close();
    this.#reaper?.reap();
    this.#reaper?.stop();
    this.emit('stopped', status);
    return status;
  }
}
