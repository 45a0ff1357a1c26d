// A process as an fd: who is on the other end of a socket, a copy of one of
// its fds, a signal that cannot hit a stranger, and a wait for its exit that
// works for any process (no child_process handle needed).
// Run as root (pidfd_getfd needs ptrace rights): node examples/pidfd.mjs
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdServer } from 'fdpass';

const dir = mkdtempSync(join(tmpdir(), 'fdpass-pidfd-'));
const log = join(dir, 'worker.log');
writeFileSync(log, 'a line the worker keeps open on its fd 7\n');
const server = await FdServer.listen(join(dir, 'control.sock'));

// Some process connects; here a python3 worker, detached, holding its log on fd 7.
const worker = `import os, socket, sys, time
os.dup2(os.open(sys.argv[2], os.O_RDONLY), 7)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(600)`;
spawn('python3', ['-c', worker, server.path, log], { stdio: 'ignore', detached: true }).unref();

const sock = await server.accept();
const peer = sock.peerPidfd(); // SO_PEERPIDFD: this process, even if its pid is reused later
console.log(`peer pid ${peer.pid === sock.peer.pid ? 'is' : 'is not'} the one SO_PEERCRED reports`);

const fd = peer.getFd(7); // pidfd_getfd: a copy of its fd 7, ours to close
console.log(`its fd 7 reads: ${readFileSync(fd, 'utf8').trim()}`);
closeSync(fd);

peer.signal('SIGTERM'); // pidfd_send_signal
await peer.exited(); // the pidfd polls readable once it has exited
console.log('the worker exited');
peer.close();

await sock.close();
await server.close();
rmSync(dir, { recursive: true, force: true });
