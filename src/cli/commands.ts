// The CLI's command table. Each command lives in its own module and exports a
// Command; add it to the list below.

export interface Command {
  name: string;
  /** One line for "fdpass --help". */
  summary: string;
  /** Runs the command with its arguments; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

import { demo } from './demo.js';
import { recvtty } from './recvtty.js';
import { run } from './run.js';

export const commands: Command[] = [recvtty, demo, run];
