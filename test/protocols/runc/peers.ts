// Peers and observers shared by the runc tests.
import { spawn } from 'node:child_process';
import type { FdPassError, PeerCredentials } from 'fdpass';
import type { RuncListener } from 'fdpass/runc';

/** Record a listener's 'error' events; next() waits for the next one. */
export function errors<T>(listener: RuncListener<T>): {
  list: { code: string; peer: PeerCredentials | null }[];
  next: () => Promise<FdPassError>;
} {
  const list: { code: string; peer: PeerCredentials | null }[] = [];
  const waiting: ((e: FdPassError) => void)[] = [];
  listener.on('error', (err, peer) => {
    list.push({ code: err.code, peer });
    waiting.shift()?.(err);
  });
  return { list, next: () => new Promise((resolve) => waiting.push(resolve)) };
}

/**
 * A python3 peer: connects a stream socket `s` to path, then runs `body`
 * (socket, os, json and sys imported; extra arguments in sys.argv[2:]).
 */
export function pythonPeer(path: string, body: string, args: string[] = []): Promise<string> {
  const code = `import socket, os, sys, json\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.connect(sys.argv[1])\n${body}\n`;
  return new Promise((resolve, reject) => {
    const p = spawn('python3', ['-c', code, path, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('error', reject);
    p.on('close', (rc) => {
      clearTimeout(timer);
      if (rc === 0) resolve(out);
      else reject(new Error(`python3 peer failed (${rc}): ${err}`));
    });
  });
}
