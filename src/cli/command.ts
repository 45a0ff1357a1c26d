// What a command of the CLI is. Each command lives in its own module and
// exports one; commands.ts lists them.
export interface Command {
  name: string;
  /** One line for "fdpass --help". */
  summary: string;
  /** Runs the command with its arguments; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}
