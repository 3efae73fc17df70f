// Every `gantry` subcommand, loaded only when it is the one asked for.
import type { Command } from '@gantry/core';

export const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  doctor: { summary: 'check that Consul (and the other engines named) answer', load: async () => (await import('./doctor.ts')).doctor },
};
