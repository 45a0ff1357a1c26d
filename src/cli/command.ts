// What a command of the CLI is. Each command lives in its own module and
// exports one; commands.ts lists them.
export interface Command {
  name: string;
  /** One line for "fdpass --help". */
  summary: string;
  /** Runs the command with its arguments; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

/** Bad usage: the command prints it with a pointer to its --help and exits 2. */
export class UsageError extends Error {}

/**
 * A command line read one argument at a time, as every command reads it:
 * `--name value` or `--name=value` for an option with a value, `-x value`
 * for a short one, anything else as it stands.
 */
export class ArgReader {
  readonly #args: readonly string[];
  #next = 0;
  #arg = '';
  #eq = -1;

  constructor(args: readonly string[]) {
    this.#args = args;
  }

  /** Moves to the next argument; false once none is left. */
  next(): boolean {
    if (this.#next >= this.#args.length) return false;
    this.#arg = this.#args[this.#next++]!;
    this.#eq = this.#arg.startsWith('--') ? this.#arg.indexOf('=') : -1;
    return true;
  }

  /** The current argument as written. */
  get arg(): string {
    return this.#arg;
  }

  /** The option's name: the argument without a `=value`. */
  get flag(): string {
    return this.#eq > 0 ? this.#arg.slice(0, this.#eq) : this.#arg;
  }

  /** Whether the argument carried its value after a `=`. */
  get hasInlineValue(): boolean {
    return this.#eq > 0;
  }

  /** The option's value: after its `=`, else the next argument (consumed). */
  value(): string {
    if (this.#eq > 0) return this.#arg.slice(this.#eq + 1);
    const v = this.#args[this.#next++];
    if (v === undefined) throw new UsageError(`${this.flag} needs a value`);
    return v;
  }

  /** The arguments after the current one (consumed), or from it on with `fromCurrent`. */
  rest(fromCurrent = false): string[] {
    const out = this.#args.slice(fromCurrent ? this.#next - 1 : this.#next);
    this.#next = this.#args.length;
    return out;
  }
}
