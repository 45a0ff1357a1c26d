// The CLI's command table. Each command lives in its own module and exports a
// Command (command.ts); add it to the list below.
import type { Command } from './command.js';
import { demo } from './demo.js';
import { recvtty } from './recvtty.js';
import { run } from './run.js';

export const commands: Command[] = [recvtty, demo, run];
