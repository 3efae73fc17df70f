// `gantry audit log`: who registered what, from where, and why; --follow streams.
import { UsageError, escapeLogField, type Flags, type CommandContext } from '@gantry/core';
import { readAudit, followAudit } from './reader.ts';
import type { AuditEntry } from './entry.ts';

export function parseSince(value: string): Date {
  const rel = /^(\d+)(s|m|h|d)$/.exec(value);
  if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's' | 'm' | 'h' | 'd']);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`flag --since: invalid value ${JSON.stringify(value)}: expected an ISO time or a duration such as 1h`);
  return d;
}

/** One entry as a text line; every value from a writer has its control characters escaped. */
export function formatEntry(e: AuditEntry): string {
  const x = (s: string | undefined): string => escapeLogField(s ?? '');
  return `${x(e.time)}  ${x(e.action).padEnd(10)} ${x(e.service)}  ${x(e.instance)}  ${x(e.source)}:${x(e.origin)}${e.originName ? ` (${x(e.originName)})` : ''}${e.image ? ` image=${x(e.image)}` : ''}  host=${x(e.host)}  reason=${x(e.reason)}  owner=${x(e.owner)}${e.status ? `  status=${x(e.status)}` : ''}${e.error ? `  error=${x(e.error)}` : ''}${e.detail ? `  ${x(e.detail)}` : ''}\n`;
}

export async function runLog(f: Flags, ctx: CommandContext): Promise<number> {
  const since = f.optStr('since');
  const service = f.optStr('service');
  const base = { url: f.str('audit-redis'), key: f.str('audit-key'), ...(service ? { service } : {}) };
  const print = (e: AuditEntry & { id: string }): void => { ctx.stdout.write(f.bool('json') ? `${JSON.stringify(e)}\n` : formatEntry(e)); };
  const entries = await readAudit({ ...base, limit: f.int('limit'), ...(since ? { since: parseSince(since) } : {}) });
  for (const e of entries) print(e);
  if (f.bool('follow')) {
    // from the last entry printed (or the stream's end): nothing between the two reads is lost
    await followAudit({ ...base, ...(entries.length ? { after: entries[entries.length - 1]!.id } : {}) }, print, ctx.signal);
  }
  return 0;
}
