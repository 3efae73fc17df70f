// What a `gantry <subcommand>` is, and how one is run: flags parsed (exit 2 on a
// bad one), --help printed, SIGINT/SIGTERM turned into an AbortSignal, errors
// turned into an exit status.
import { parseFlags, helpText, type FlagSpec, type Flags } from './flags.ts';
import { UsageError, GantryError, errorMessage } from './errors.ts';

export interface CommandContext {
  /** aborted on SIGINT/SIGTERM: long-running commands stop cleanly */
  signal: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  name: string;
  summary: string;
  flags: readonly FlagSpec[];
  /** resolves with the exit status */
  run(flags: Flags, ctx: CommandContext): Promise<number>;
}

export const EXIT_USAGE = 2;

export async function runCommand(cmd: Command, argv: readonly string[], ctx: CommandContext): Promise<number> {
  const usage = `gantry ${cmd.name}`;
  let flags: Flags;
  try {
    flags = parseFlags(cmd.flags, argv, ctx.env, usage);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.stderr.write(`${usage}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (flags.help) {
    ctx.stdout.write(helpText(usage, cmd.summary, cmd.flags));
    return 0;
  }
  try {
    return await cmd.run(flags, ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.stderr.write(`${usage}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    const code = err instanceof GantryError ? ` [${err.code}]` : '';
    ctx.stderr.write(`${usage}: ${errorMessage(err)}${code}\n`);
    return 1;
  }
}
