// `gantry audit log`: who registered what, from where, and why.
import { UsageError, type Command, type FlagSpec } from '@gantry/core';
import { readAudit } from './reader.ts';

const flags: readonly FlagSpec[] = [
  { name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss', 'redis+sentinel'], default: 'redis://127.0.0.1:6379', description: 'Redis URL of the audit stream (redis+sentinel://host:port,…/<master> too)' },
  { name: 'audit-key', type: 'string', default: 'gantry:audit', description: 'Redis stream key' },
  { name: 'since', type: 'string', description: 'only entries since a time (ISO 8601) or for a duration back (e.g. 1h, 30m)' },
  { name: 'service', type: 'string', description: 'only entries of this service' },
  { name: 'limit', type: 'int', default: 1000, min: 1, description: 'at most this many entries (the newest)' },
  { name: 'json', type: 'boolean', default: false, description: 'one JSON object per line' },
];

function parseSince(value: string): Date {
  const rel = /^(\d+)(s|m|h|d)$/.exec(value);
  if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's' | 'm' | 'h' | 'd']);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`flag --since: invalid value ${JSON.stringify(value)}: expected an ISO time or a duration such as 1h`);
  return d;
}

export const auditCommand: Command = {
  name: 'audit',
  summary: 'Prints the audit trail of registry changes: `gantry audit log [--since 1h] [--service NAME] [--json]`.',
  flags,
  async run(f, ctx) {
    const [sub] = f.positionals;
    if (sub !== 'log') throw new UsageError(`unknown audit subcommand ${JSON.stringify(sub ?? '')} (try: gantry audit log)`);
    const since = f.optStr('since');
    const entries = await readAudit({
      url: f.str('audit-redis'), key: f.str('audit-key'), limit: f.int('limit'),
      ...(since ? { since: parseSince(since) } : {}),
      ...(f.optStr('service') ? { service: f.str('service') } : {}),
    });
    for (const e of entries) {
      if (f.bool('json')) ctx.stdout.write(`${JSON.stringify(e)}\n`);
      else ctx.stdout.write(`${e.time}  ${e.action.padEnd(10)} ${e.service}  ${e.instance}  ${e.source}:${e.origin}${e.originName ? ` (${e.originName})` : ''}${e.image ? ` image=${e.image}` : ''}  host=${e.host}  reason=${e.reason}  owner=${e.owner}${e.status ? `  status=${e.status}` : ''}\n`);
    }
    return 0;
  },
};
