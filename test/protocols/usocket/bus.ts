// A private D-Bus: Debian's dbus-daemon on a socket in a temp dir, with
// EXTERNAL auth and a permissive policy.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tempDir } from '../../helpers.js';

export interface PrivateBus {
  /** The bus address, e.g. unix:path=/tmp/.../bus,guid=... */
  address: string;
  stop(): Promise<void>;
}

export async function startBus(): Promise<PrivateBus> {
  const t = tempDir('fdpass-dbus-');
  const socket = t.path('bus');
  const config = t.path('bus.conf');
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );
  // setpriv --pdeathsig: the bus goes away with this process, even if a
  // test times out and the runner kills it before the after() hooks.
  const daemon = spawn(
    'setpriv',
    ['--pdeathsig', 'TERM', '--', 'dbus-daemon', `--config-file=${config}`, '--nofork', '--print-address=1'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  daemon.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<void>((res) => daemon.once('close', () => res()));
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      daemon.kill('SIGKILL');
      reject(new Error(`dbus-daemon did not start: ${stderr}`));
    }, 20000);
    daemon.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    daemon.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl).trim());
      }
    });
    daemon.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`dbus-daemon exited (${code}): ${stderr}`));
    });
  });
  return {
    address,
    stop: async () => {
      daemon.kill('SIGTERM');
      await exited;
      t.cleanup();
    },
  };
}
