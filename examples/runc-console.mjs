// A runc console socket: runc (here a python3 stand-in that does what runc
// does) connects and sends the pty master of the container's terminal with
// its name; we read what the "container" printed through it.
// Run: node examples/runc-console.mjs (for the real thing: fdpass recvtty)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenConsoleSocket, PtyStream } from 'fdpass/runc';

const dir = mkdtempSync(join(tmpdir(), 'fdpass-console-'));
const path = join(dir, 'console.sock');
const consoles = await listenConsoleSocket(path);

// What runc does: open a pty, give the slave to the container, send the master.
const runc = spawn('python3', ['-c', `
import os, pty, socket, sys
master, slave = pty.openpty()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
socket.send_fds(s, [b"/dev/pts/ptmx"], [master])
os.close(master)
os.write(slave, b"hello from the container\\n")
s.recv(1)  # wait until the receiver is done
`, path], { stdio: ['ignore', 'inherit', 'inherit'] });

for await (const { name, fd } of consoles) {
  const pty = new PtyStream(fd); // owns the fd; never blocks the event loop
  const line = await new Promise((resolve) => {
    let text = '';
    pty.on('data', (d) => {
      text += d;
      if (text.includes('\n')) resolve(text.split(/\r?\n/)[0]);
    });
  });
  console.log(`${name}: ${line}`);
  pty.destroy();
  break;
}
await consoles.close();
runc.kill();
await new Promise((resolve) => runc.on('close', resolve));
rmSync(dir, { recursive: true, force: true });
