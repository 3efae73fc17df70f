// `gantry audit log|drift|serve`: the audit trail, the drift report, the registry page.
import { consulFlags, UsageError, type Command, type FlagSpec, type Flags, type CommandContext } from '@gantry/core';
import { runLog } from './log-command.ts';
import { runDrift } from './drift-command.ts';

const flags: readonly FlagSpec[] = [
  ...consulFlags,
  { name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss', 'redis+sentinel'], default: 'redis://127.0.0.1:6379', description: 'Redis URL of the audit stream (redis+sentinel://host:port,…/<master> too)' },
  { name: 'audit-key', type: 'string', default: 'gantry:audit', description: 'Redis stream key' },
  { name: 'json', type: 'boolean', default: false, description: 'log: one JSON object per line; drift: the report as one JSON document' },
  // log
  { name: 'since', type: 'string', description: 'log: only entries since a time (ISO 8601) or for a duration back (e.g. 1h, 30m)' },
  { name: 'service', type: 'string', description: 'log: only entries of this service' },
  { name: 'limit', type: 'int', default: 1000, min: 1, description: 'log: at most this many entries (the newest)' },
  { name: 'follow', type: 'boolean', default: false, description: 'log: after the entries so far, print new ones as they arrive (until Ctrl-C)' },
  // drift
  { name: 'window', type: 'duration', default: '24h', description: 'drift/serve: how far back the audit stream is read' },
  { name: 'no-passing-after', type: 'duration', default: '5m', description: 'drift: report a service with no passing instance for longer than this' },
  { name: 'flap-per-hour', type: 'int', default: 6, min: 1, description: 'drift: status changes per hour at which a check is flapping' },
  { name: 'host-tag', type: 'string', default: 'gantry.host', description: 'drift: tag prefix of Host names (the templater\'s --host-tag)' },
  { name: 'fix-orphans', type: 'boolean', default: false, description: 'drift: deregister orphans whose owner is gone longer than --orphan-grace (dry run unless --apply)' },
  { name: 'orphan-grace', type: 'duration', default: '10m', description: 'drift: how long an owner must be gone before --fix-orphans removes its records' },
  { name: 'apply', type: 'boolean', default: false, description: 'drift: with --fix-orphans, really deregister (each removal audited)' },
  // serve
  { name: 'addr', type: 'addr', default: '127.0.0.1:9180', description: 'serve: where the page listens (beyond loopback only with --token or --basic-auth)' },
  { name: 'token', type: 'string', env: 'GANTRY_AUDIT_TOKEN', secret: true, description: 'serve: bearer token required on every request' },
  { name: 'basic-auth', type: 'string', env: 'GANTRY_AUDIT_BASIC_AUTH', secret: true, description: 'serve: user:password required on every request (HTTP basic)' },
  { name: 'refresh', type: 'duration', default: '5s', description: 'serve: how often the registry is read again' },
];

export const auditCommand: Command = {
  name: 'audit',
  summary: 'The audit trail and the truth of the registry: `gantry audit log [--since 1h] [--service NAME] [--follow] [--json]`, `gantry audit drift [--json] [--fix-orphans [--apply]]` (exit 0 clean, 1 drift), `gantry audit serve [--addr 127.0.0.1:9180]` (the registry page).',
  flags,
  async run(f: Flags, ctx: CommandContext) {
    const [sub] = f.positionals;
    if (sub === 'log') return runLog(f, ctx);
    if (sub === 'drift') return runDrift(f, ctx);
    if (sub === 'serve') return (await import('./serve-command.ts')).runServe(f, ctx);
    throw new UsageError(`unknown audit subcommand ${JSON.stringify(sub ?? '')} (try: gantry audit log | drift | serve)`);
  },
};
