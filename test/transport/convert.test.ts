// socketFromFd, serverFromFd, readStreamFromFd, writeStreamFromFd: each takes
// a fd that came through an FdSocket (a real SCM_RIGHTS copy, as a receiver
// gets it) and gives back what Node code uses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { FdSocket, readStreamFromFd, serverFromFd, socketFromFd, writeStreamFromFd, type FdLike } from 'fdpass';
import { isOpen, noLeak, tempDir } from '../helpers.js';
import { needs } from '../tools.js';

/** Pass `what` through a socketpair: the fd a receiver would get. */
async function passed(what: FdLike): Promise<number> {
  const [a, b] = FdSocket.pair();
  try {
    await a.sendFd('x', what);
    return (await b.recvFd()).fd;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

async function readAll(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
  return text;
}

describe('convert', () => {
  it('socketFromFd: a net.Socket on a received TCP connection, both directions', async () => {
    await noLeak(async () => {
      const server = net.createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const accepted = once(server, 'connection') as Promise<[net.Socket]>;
      const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      await once(client, 'connect');
      const [peer] = await accepted;
      const fd = await passed(client);
      client.destroy(); // our copy is now the only one
      const sock = socketFromFd(fd);
      assert.ok(sock instanceof net.Socket);
      sock.write('ping');
      const [got] = (await once(peer, 'data')) as [Buffer];
      assert.equal(got.toString(), 'ping');
      peer.end('pong');
      assert.equal(await readAll(sock), 'pong');
      sock.destroy();
      await once(sock, 'close');
      assert.ok(!isOpen(fd), 'destroy() closed the fd');
      server.close();
      await once(server, 'close');
    });
  });

  it('serverFromFd: a net.Server and an http.Server on a received listener', async () => {
    await noLeak(async () => {
      const original = net.createServer();
      original.listen(0, '127.0.0.1');
      await once(original, 'listening');
      const { port } = original.address() as net.AddressInfo;
      const fd = await passed(original);
      original.close(); // only our copy listens now: the port stays open
      await once(original, 'close');

      const server = await serverFromFd(
        fd,
        http.createServer((_req, res) => res.end('served by the inherited listener\n')),
      );
      assert.ok(server instanceof http.Server);
      assert.equal((server.address() as net.AddressInfo).port, port);
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(await res.text(), 'served by the inherited listener\n');
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
      assert.ok(!isOpen(fd));

      const plain = net.createServer();
      plain.listen(0, '127.0.0.1');
      await once(plain, 'listening');
      const fd2 = await passed(plain);
      plain.close();
      const s2 = await serverFromFd(fd2);
      assert.ok(s2 instanceof net.Server && s2.listening);
      s2.close();
      await once(s2, 'close');
    });
  });

  it('readStreamFromFd and writeStreamFromFd on files', async () => {
    const tmp = tempDir();
    try {
      await noLeak(async () => {
        writeFileSync(tmp.path('in.txt'), 'a file read through a passed fd\n');
        const inFd = openSync(tmp.path('in.txt'), 'r');
        const rfd = await passed(inFd);
        closeSync(inFd);
        assert.equal(await readAll(readStreamFromFd(rfd, { encoding: 'utf8' })), 'a file read through a passed fd\n');
        assert.ok(!isOpen(rfd), 'the end of the stream closed the fd');

        const outFd = openSync(tmp.path('out.txt'), 'w');
        const wfd = await passed(outFd);
        closeSync(outFd);
        const w = writeStreamFromFd(wfd);
        w.end('written through a passed fd\n');
        await once(w, 'close');
        assert.equal(readFileSync(tmp.path('out.txt'), 'utf8'), 'written through a passed fd\n');
        assert.ok(!isOpen(wfd));
      });
    } finally {
      tmp.cleanup();
    }
  });

  it('readStreamFromFd and writeStreamFromFd on pipes (a child process at the other end)', needs('python3'), async () => {
    await noLeak(async () => {
      // A pipe to read: the child's stdout.
      const writer = spawn('python3', ['-c', 'import sys; sys.stdout.write("from a pipe\\n" * 3)'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const rfd = await passed(writer.stdout as net.Socket);
      writer.stdout.destroy();
      const r = readStreamFromFd(rfd);
      assert.ok(r instanceof net.Socket, 'a pipe is read by libuv, not by the thread pool');
      assert.equal(await readAll(r), 'from a pipe\n'.repeat(3));
      await once(writer, 'close');

      // A pipe to write: cat's stdin, cat echoes it on its stdout.
      const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
      const wfd = await passed(cat.stdin as net.Socket);
      cat.stdin.destroy();
      const echoed = readAll(cat.stdout);
      const w = writeStreamFromFd(wfd);
      w.write('through ');
      w.end('a passed pipe\n');
      assert.equal(await echoed, 'through a passed pipe\n');
      await once(cat, 'close');
      assert.ok(!isOpen(wfd));
    });
  });

  it('wrong kinds of fd: an error, and the fd is closed (ownership was taken)', async () => {
    const tmp = tempDir();
    try {
      await noLeak(async () => {
        writeFileSync(tmp.path('f'), 'x');
        const file = openSync(tmp.path('f'), 'r');
        assert.throws(() => socketFromFd(file), { code: 'ENOTSOCK' });
        assert.ok(!isOpen(file));

        const [a, b] = FdSocket.pair('dgram');
        const dgramFd = b.release();
        assert.throws(() => socketFromFd(dgramFd), { code: 'ERR_FDPASS_BAD_SOCKET' });
        assert.ok(!isOpen(dgramFd));
        await a.close();

        const [c, d] = FdSocket.pair();
        const connected = d.release();
        await assert.rejects(serverFromFd(connected), { code: 'ERR_FDPASS_BAD_SOCKET' });
        assert.ok(!isOpen(connected));
        await c.close();

        const listener = net.createServer().listen(tmp.path('l.sock'));
        await once(listener, 'listening');
        const listeningFd = await passed(listener);
        listener.close();
        await once(listener, 'close');
        assert.throws(() => socketFromFd(listeningFd), { code: 'ERR_FDPASS_BAD_SOCKET' });
        assert.ok(!isOpen(listeningFd));
      });
      assert.throws(() => socketFromFd('3' as unknown as number), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => readStreamFromFd(-1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      const unused = openSync('/dev/null', 'r');
      closeSync(unused);
      assert.throws(() => writeStreamFromFd(unused), { code: 'EBADF' });
    } finally {
      tmp.cleanup();
    }
  });
});
