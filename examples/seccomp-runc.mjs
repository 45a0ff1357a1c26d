// A seccomp agent for a real runc container: it refuses mkdir with EPERM and
// serves a file of its own choosing when the container opens /magic (the fd
// is injected into the container's open), and lets every other open through.
// Run as root with Debian's runc and busybox-static: node examples/seccomp-runc.mjs
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenSeccompAgent } from 'fdpass/runc';
import { SeccompNotifier } from 'fdpass/seccomp';

const dir = mkdtempSync(join(tmpdir(), 'fdpass-seccomp-'));
const bundle = join(dir, 'bundle');
mkdirSync(join(bundle, 'rootfs', 'bin'), { recursive: true });
copyFileSync('/bin/busybox', join(bundle, 'rootfs', 'bin', 'busybox'));
for (const applet of ['sh', 'mkdir', 'cat']) symlinkSync('busybox', join(bundle, 'rootfs', 'bin', applet));
spawnSync('runc', ['spec'], { cwd: bundle });
const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
config.process.terminal = false;
config.process.args = ['/bin/sh', '-c', 'mkdir /tmp/new || echo "mkdir refused"; cat /magic'];
config.linux.seccomp = {
  defaultAction: 'SCMP_ACT_ALLOW',
  listenerPath: join(dir, 'agent.sock'),
  syscalls: [{ names: ['mkdir', 'mkdirat', 'openat'], action: 'SCMP_ACT_NOTIFY' }],
};
writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
writeFileSync(join(dir, 'magic.txt'), 'hello from the agent\n');

const agent = await listenSeccompAgent(config.linux.seccomp.listenerPath);
const runc = spawn('runc', ['--root', join(dir, 'state'), 'run', `fdpass-demo-${process.pid}`], {
  cwd: bundle,
  stdio: ['ignore', 'pipe', 'ignore'],
});
let output = '';
runc.stdout.on('data', (d) => (output += d));
const exited = new Promise((resolve) => runc.on('close', resolve));

// One container: take its notify fd, answer until all its processes are gone.
const { fds } = await agent.next();
await agent.close();
const notifier = new SeccompNotifier(fds.seccompFd);
const magic = openSync(join(dir, 'magic.txt'), 'r');
for await (const req of notifier) {
  try {
    if (req.syscall === 'mkdir' || req.syscall === 'mkdirat') {
      const path = await notifier.readString(req, req.args[req.syscall === 'mkdirat' ? 1 : 0]);
      console.log(`agent: refused mkdir ${path}`);
      await notifier.respond(req, { error: 'EPERM' });
    } else if ((await notifier.readString(req, req.args[1])) === '/magic') {
      console.log('agent: served /magic');
      await notifier.addFd(req, magic, { send: true }); // open() returns our file
    } else {
      await notifier.respond(req, { continue: true });
    }
  } catch (err) {
    if (err.code !== 'ENOENT') throw err; // ENOENT: the process died meanwhile
  }
}
notifier.close();
closeSync(magic);
await exited;
for (const line of output.trimEnd().split('\n')) console.log(`container: ${line}`);
rmSync(dir, { recursive: true, force: true });
