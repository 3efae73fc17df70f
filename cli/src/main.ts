// `gantry <subcommand> [flags]`: finds the subcommand and runs it.
import { runCommand, EXIT_USAGE } from '@gantry/core';
import { commands } from './commands.ts';

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const list = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`).join('\n');
  return `Usage: gantry <command> [flags]\n\nCommands:\n${list}\n\nRun 'gantry <command> --help' for the flags of one command.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const entry = commands[name];
  if (!entry) {
    process.stderr.write(`gantry: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return EXIT_USAGE;
  }
  const cmd = await entry.load();
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) process.exit(130); // second signal: stop now
    ac.abort(new Error(`received ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await runCommand(cmd, rest, { signal: ac.signal, stdout: process.stdout, stderr: process.stderr, env: process.env });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
