// Passing a memfd: an anonymous in-memory file, shared by handing its fd over.
// Node has no memfd_create(2), so a python3 peer creates one (os.memfd_create),
// fills it and sends it; we read it. Run: node examples/memfd.mjs
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdServer } from 'fdpass';

const path = join(tmpdir(), `fdpass-memfd-${process.pid}.sock`);
const server = await FdServer.listen(path);
const peer = spawn('python3', ['-c', `
import os, socket, sys
fd = os.memfd_create("shared-buffer")
os.write(fd, b"hello from a memfd\\n")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
socket.send_fds(s, [b"shared-buffer"], [fd])
`, path], { stdio: 'inherit' });

const conn = await server.accept();
const { name, fd } = await conn.recvFd();
console.log(name, readlinkSync(`/proc/self/fd/${fd}`)); // /memfd:shared-buffer (deleted)
console.log(readFileSync(`/proc/self/fd/${fd}`, 'utf8').trim()); // reopen: a memfd's content from offset 0
closeSync(fd);
await conn.close();
await server.close();
await new Promise((resolve) => peer.on('close', resolve));
