// dbus-next 0.10 over fdpass/usocket on a private dbus-daemon: UNIX_FD
// arguments and return values, between dbus-next peers and with libdbus
// (python3-dbus). dbus-next finds fdpass the way a user's project would: its
// require('usocket') resolves to packages/usocket-compat, installed as a
// file: dependency named usocket (see package.json and docs/usocket.md).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, fstatSync, openSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { MessageBus, SessionBusOptions } from 'dbus-next';
import { noLeak, repoRoot, tempDir } from '../../helpers.js';
import { isCloexec, runChild } from '../../transport/stream/util.js';
import { PrivateBus, startBus } from './bus.js';
import { have, needs, pythonWithDbus } from '../../tools.js';

const require = createRequire(import.meta.url);
const dbus = require('dbus-next') as typeof import('dbus-next');
// dbus-next is CommonJS, and so is the fdpass it loads (packages/usocket-compat
// loads dist-cjs): the same classes here.
const { FdStream } = require('fdpass/stream') as typeof import('fdpass/stream');
type FdStream = import('fdpass/stream').FdStream;
const { USocket } = require('fdpass/usocket') as typeof import('fdpass/usocket');

const SERVICE = 'org.fdpass.Test';
const OBJECT = '/org/fdpass/Test';
const pythonClient = join(repoRoot, 'test', 'peers', 'dbus_client.py');

interface Inhibitor {
  what: string;
  /** The service's end, like logind's: it sees end of file once every copy of `given` is closed. */
  kept: FdStream;
  /** The end whose fd the method returned. */
  given: FdStream;
}

interface Observed {
  cloexec: boolean[];
  inhibitors: Inhibitor[];
}

function makeInterface(observed: Observed): InstanceType<typeof dbus.interface.Interface> {
  class TestInterface extends dbus.interface.Interface {
    /** Reads the file whose fd came with the call, then closes the fd (ours now). */
    ReadFile(fd: number): string {
      observed.cloexec.push(isCloexec(fd));
      try {
        return readFileSync(fd, 'utf8');
      } finally {
        closeSync(fd);
      }
    }

    ReadFiles(fds: number[]): string {
      return fds.map((fd) => this.ReadFile(fd)).join('|');
    }

    /** Like logind's Inhibit: returns an fd; the inhibitor lasts until it is closed. */
    Inhibit(what: string): number {
      const [kept, given] = FdStream.pair();
      observed.inhibitors.push({ what, kept, given });
      return given.fd;
    }
  }
  TestInterface.configureMembers({
    methods: {
      ReadFile: { inSignature: 'h', outSignature: 's' },
      ReadFiles: { inSignature: 'ah', outSignature: 's' },
      Inhibit: { inSignature: 's', outSignature: 'h' },
    },
  });
  return new TestInterface(SERVICE);
}

function connect(address: string): MessageBus {
  return dbus.sessionBus({ busAddress: address, negotiateUnixFd: true } as SessionBusOptions);
}

function streamOf(bus: MessageBus): FdStream {
  return (bus as unknown as { _connection: { stream: FdStream } })._connection.stream;
}

/** Resolves once the stream has closed (at once if it has). */
async function closed(stream: FdStream): Promise<void> {
  if (!stream.closed) await once(stream, 'close');
}

async function disconnect(bus: MessageBus): Promise<void> {
  const done = closed(streamOf(bus));
  bus.disconnect();
  await done;
}

async function startService(address: string, observed: Observed): Promise<MessageBus> {
  const bus = connect(address);
  const reply = await bus.requestName(SERVICE, 0);
  assert.equal(reply, dbus.RequestNameReply.PRIMARY_OWNER);
  bus.export(OBJECT, makeInterface(observed));
  return bus;
}

/** Everything the kept end of an inhibitor reads until end of file. */
async function readToEnd(stream: FdStream): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  if (!stream.readableEnded) await once(stream, 'end');
  return Buffer.concat(chunks).toString();
}

function files(t: ReturnType<typeof tempDir>, contents: string[]): { fds: number[]; close: () => void } {
  const fds = contents.map((c, i) => {
    const p = t.path(`file${i}.txt`);
    writeFileSync(p, c);
    return openSync(p, 'r');
  });
  return { fds, close: () => fds.forEach((fd) => closeSync(fd)) };
}

describe('dbus-next over fdpass/usocket on a private dbus-daemon', needs('dbus-daemon', 'setpriv'), () => {
  let bus: PrivateBus;
  before(async () => {
    bus = await startBus();
  });
  after(async () => {
    await bus.stop();
  });

  test("require('usocket') resolves to fdpass's compat package, as in a user's project", () => {
    const resolved = realpathSync(createRequire(require.resolve('dbus-next')).resolve('usocket'));
    assert.equal(resolved, join(repoRoot, 'packages', 'usocket-compat', 'index.js'));
    const compat = createRequire(require.resolve('dbus-next'))('usocket') as { USocket: unknown };
    assert.equal(compat.USocket, USocket);
  });

  test('dbus-next client and service: fds as arguments (h, ah) and as a return value', { timeout: 30000 }, () =>
    noLeak(async () => {
      const t = tempDir();
      const observed: Observed = { cloexec: [], inhibitors: [] };
      const service = await startService(bus.address, observed);
      const client = connect(bus.address);
      assert.ok(streamOf(client) instanceof USocket, 'dbus-next uses fdpass as its transport');
      const proxy = await client.getProxyObject(SERVICE, OBJECT);
      const iface = proxy.getInterface(SERVICE);

      // One fd per call, many calls in flight: each message keeps its own fd.
      const contents = Array.from({ length: 12 }, (_, i) => `file ${i} `.repeat(i * 50 + 1));
      const f = files(t, contents);
      const texts = (await Promise.all(f.fds.map((fd) => iface.ReadFile!(fd)))) as string[];
      assert.deepEqual(texts, contents);
      const many = files(t, ['a', 'b', 'c']);
      assert.equal(await iface.ReadFiles!(many.fds), 'a|b|c');
      f.close();
      many.close();
      assert.equal(observed.cloexec.length, 15);
      assert.ok(observed.cloexec.every(Boolean), 'fds received by the service are close-on-exec');

      // An fd as the return value.
      const fd = (await iface.Inhibit!('sleep')) as number;
      assert.equal(typeof fd, 'number');
      assert.equal(isCloexec(fd), true, 'the fd received by the client is close-on-exec');
      const inhibitor = observed.inhibitors[0]!;
      assert.equal(inhibitor.what, 'sleep');
      assert.equal(fstatSync(fd).ino, fstatSync(inhibitor.given.fd).ino, 'the client holds the socket the service returned');
      // The reply went out (the client has it): the service drops its copy.
      inhibitor.given.destroy();
      const released = readToEnd(inhibitor.kept);
      const mine = FdStream.fromFd(fd);
      mine.resume();
      mine.end('from js');
      assert.equal(await released, 'from js', 'the inhibitor ends when the client closes its fd');
      await closed(mine);
      await closed(inhibitor.kept);

      await disconnect(client);
      await disconnect(service);
      t.cleanup();
    }),
  );

  test('a libdbus client (python3-dbus) passes an fd to a dbus-next service and receives one from it', { timeout: 30000 }, (ctx) =>
    noLeak(async () => {
      if (!have(ctx, 'python3-dbus')) return;
      const t = tempDir();
      const observed: Observed = { cloexec: [], inhibitors: [] };
      const service = await startService(bus.address, observed);
      const path = t.path('for-python.txt');
      writeFileSync(path, 'read through the fd python sent');
      const result = await runChild(pythonWithDbus()!, [pythonClient, bus.address, path, SERVICE]);
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout) as { text: string; leaked: string[] };
      assert.equal(summary.text, 'read through the fd python sent');
      assert.deepEqual(summary.leaked, [], 'python closed what it received');
      assert.deepEqual(observed.cloexec, [true]);
      const inhibitor = observed.inhibitors[0]!;
      inhibitor.given.destroy();
      assert.equal(await readToEnd(inhibitor.kept), 'from python');
      await closed(inhibitor.kept);
      await disconnect(service);
      t.cleanup();
    }),
  );
});
