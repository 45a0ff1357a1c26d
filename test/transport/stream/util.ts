// Helpers for the stream and usocket tests: paused-mode reads that wait,
// fd flags, and child processes that are awaited (never spawnSync: the peer
// talks to this very event loop).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';

export interface FdChunkLike {
  data: Buffer | null;
  fds: number[];
}

interface FdReadable extends Readable {
  read(size?: number): Buffer | null;
  read(size: number | undefined, fdCount: number | null): FdChunkLike | null;
}

/** Wait until read(size) (or read(size, fdCount)) returns something. */
export function readWhenReady(stream: FdReadable, size: number): Promise<Buffer>;
export function readWhenReady(stream: FdReadable, size: number, fdCount: number | null): Promise<FdChunkLike>;
export function readWhenReady(stream: FdReadable, size: number, fdCount?: number | null): Promise<Buffer | FdChunkLike> {
  return new Promise((resolve, reject) => {
    const attempt = (): boolean => {
      const r = fdCount === undefined ? stream.read(size) : stream.read(size, fdCount);
      if (r === null) return false;
      cleanup();
      resolve(r);
      return true;
    };
    const onReadable = (): void => {
      attempt();
    };
    const onEnd = (): void => {
      if (attempt()) return;
      cleanup();
      reject(new Error(`stream ended before ${size} bytes`));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    attempt();
  });
}

/** True when the fd of this process has FD_CLOEXEC (from /proc/self/fdinfo). */
export function isCloexec(fd: number): boolean {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /^flags:\s+([0-7]+)$/m.exec(info);
  if (!m) throw new Error(`no flags in fdinfo of ${fd}`);
  return (parseInt(m[1]!, 8) & 0o2000000) !== 0;
}

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program to its end without blocking the event loop; rejects after timeoutMs. */
export function runChild(file: string, args: string[], timeoutMs = 60000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} timed out after ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
