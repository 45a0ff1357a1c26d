// fdpass/usocket where test sandboxes run it: the CommonJS build loaded into
// a vm context by a module loader that, like Jest 24's, does not resolve
// 'node:' names and gives the sandbox no AbortController or AbortSignal,
// with Buffers made outside the sandbox (as Jest's Buffer global is). Before
// this worked, dbus-next under Jest silently fell back to a socket without
// fds ('node:events' did not load), and fd writes refused a Buffer from
// another realm.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import vm from 'node:vm';
import { FdSocket } from 'fdpass';
import { FdStream } from 'fdpass/stream';
import { noLeak, tempDir } from '../../helpers.js';
import { readWhenReady } from '../../transport/stream/util.js';

const hostRequire = createRequire(import.meta.url);

/**
 * A CommonJS loader over a fresh vm context: files are compiled in the
 * context, core modules come from the host by their bare names only (a
 * 'node:' name throws, as under Jest 24), addons load through the host.
 */
function sandbox(): { require: (file: string) => unknown; context: vm.Context } {
  const context = vm.createContext({
    process,
    Buffer,
    console,
    setTimeout,
    clearTimeout,
    setImmediate,
    clearImmediate,
    setInterval,
    clearInterval,
    queueMicrotask,
  });
  const cache = new Map<string, { exports: unknown }>();
  const bare = new Set(builtinModules);
  function load(file: string): unknown {
    const cached = cache.get(file);
    if (cached) return cached.exports;
    const module = { exports: {} as unknown };
    cache.set(file, module);
    const wrapper = vm.runInContext(
      `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`,
      context,
      {
        filename: file,
      },
    ) as (...args: unknown[]) => void;
    const requireHere = (name: string): unknown => {
      if (name.startsWith('node:')) throw new Error(`Cannot find module '${name}' from '${file}'`);
      if (name.startsWith('.') || name.startsWith('/')) {
        const target = resolve(dirname(file), name);
        if (target.endsWith('.node')) return hostRequire(target);
        return load(target.endsWith('.js') || target.endsWith('.json') ? target : `${target}.js`);
      }
      if (bare.has(name)) return hostRequire(name);
      throw new Error(`Cannot find module '${name}' from '${file}'`);
    };
    wrapper(module.exports, requireHere, module, file, dirname(file));
    return module.exports;
  }
  return { require: load, context };
}

interface SandboxedUsocket {
  USocket: new (options?: { fd?: number; path?: string }) => import('fdpass/usocket').USocket;
  UServer: new () => import('fdpass/usocket').UServer;
}

describe('fdpass/usocket in a sandbox realm', () => {
  test("the CommonJS build loads with 'node:' names unresolvable and no AbortController; fds pass with Buffers of another realm", () =>
    noLeak(async () => {
      const box = sandbox();
      assert.equal(vm.runInContext('typeof AbortController + typeof AbortSignal', box.context), 'undefinedundefined');
      // packages/usocket-compat, as dbus-next's require('usocket') finds it.
      const compat = hostRequire.resolve('usocket');
      const { USocket, UServer } = box.require(compat) as SandboxedUsocket;

      const t = tempDir();
      const path = t.path('u.sock');
      const server = new UServer();
      server.listen(path);
      await once(server, 'listening');
      // connect() by path: no global AbortController is needed to cancel it.
      const client = new USocket({ path });
      const [[conn]] = (await Promise.all([once(server, 'connection'), once(client, 'connected')])) as [[FdStream], unknown];

      const fd = openSync('/dev/null', 'r');
      // The sandbox's own Uint8Array and the host's Buffer: both are bytes.
      const sandboxBytes = vm.runInContext('new Uint8Array([104, 105])', box.context) as Uint8Array;
      assert.equal(sandboxBytes instanceof Uint8Array, false, 'made in another realm');
      client.write({ data: sandboxBytes, fds: [fd] });
      client.write({ data: Buffer.from('there'), fds: [fd] });
      const first = await readWhenReady(conn, 2, 1);
      const second = await readWhenReady(conn, 5, 1);
      assert.equal(first.data!.toString(), 'hi');
      assert.equal(second.data!.toString(), 'there');
      for (const got of [first, second]) {
        assert.equal(fstatSync(got.fds[0]!).ino, fstatSync(fd).ino);
        closeSync(got.fds[0]!);
      }
      closeSync(fd);

      // A connect that is destroyed while it waits needs no AbortController either.
      const nowhere = new USocket({ path: t.path('nobody') });
      nowhere.on('error', () => undefined);
      nowhere.destroy();
      for (const s of [client, conn, nowhere]) s.destroy();
      await Promise.all([client, conn, nowhere].map((s) => (s.closed ? undefined : once(s, 'close'))));
      server.close();
      await once(server, 'close');
      t.cleanup();
    }));

  test('the ES build takes bytes and AbortSignals made in another realm', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('seqpacket');
      const foreign = vm.runInNewContext('new Uint8Array([1, 2, 3])') as Uint8Array;
      const fd = openSync('/dev/null', 'r');
      await a.send(foreign, [fd]);
      const m = (await b.recv())!;
      assert.deepEqual([...m.data], [1, 2, 3]);
      assert.equal(m.fds.length, 1);
      closeSync(m.fds[0]!);

      const [x, y] = FdSocket.pair('stream');
      const s = FdStream.fromSocket(x);
      const r = FdStream.fromSocket(y);
      s.write({ data: vm.runInNewContext('new Uint8Array([33])') as Uint8Array, fds: [fd] });
      const got = await readWhenReady(r, 1, null);
      assert.equal(got.data![0], 33);
      closeSync(got.fds[0]!);
      closeSync(fd);

      // A signal-shaped object from elsewhere is accepted as a signal.
      const controller = new AbortController();
      const shaped = {
        get aborted() {
          return controller.signal.aborted;
        },
        get reason() {
          return controller.signal.reason as unknown;
        },
        addEventListener: controller.signal.addEventListener.bind(controller.signal),
        removeEventListener: controller.signal.removeEventListener.bind(controller.signal),
      } as unknown as AbortSignal;
      const waiting = b.recv({ signal: shaped });
      controller.abort();
      await assert.rejects(waiting, { name: 'AbortError' });
      for (const e of [a, b]) e.close();
      s.destroy();
      r.destroy();
      await Promise.all([once(s, 'close'), once(r, 'close')]);
    }));
});
