// The receiving side of a seccomp agent: runc connects to
// linux.seccomp.listenerPath and sends the container's state (JSON) with the
// seccomp notify fd. Here a Node stand-in sends what runc sends.
// Run: node examples/seccomp-agent.mjs
import { closeSync, mkdtempSync, openSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenSeccompAgent, sendContainerProcessState } from 'fdpass/runc';

const dir = mkdtempSync(join(tmpdir(), 'fdpass-agent-'));
const path = join(dir, 'agent.sock');
const agent = await listenSeccompAgent(path);

// The runc side (real runc sends a seccomp notify fd; any fd shows the protocol).
const notifyStandIn = openSync('/dev/null', 'r');
const state = {
  ociVersion: '1.0.2',
  fds: ['seccompFd'],
  pid: process.pid,
  metadata: 'example',
  state: { ociVersion: '1.0.2', id: 'demo-container', status: 'creating', pid: process.pid, bundle: '/run/demo' },
};
const sent = sendContainerProcessState(path, state, [notifyStandIn]);

for await (const { state: got, fds } of agent) {
  console.log(`container ${got.state.id} (${got.state.status}), metadata ${got.metadata}`);
  console.log(`seccompFd -> ${readlinkSync(`/proc/self/fd/${fds.seccompFd}`)}`);
  closeSync(fds.seccompFd); // a real agent answers notifications on it first
  break;
}
await sent;
closeSync(notifyStandIn);
await agent.close();
rmSync(dir, { recursive: true, force: true });
