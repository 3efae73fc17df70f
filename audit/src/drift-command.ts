// `gantry audit drift [--json] [--fix-orphans [--apply]]`: exit 0 clean, 1 drift, 2 bad flags.
import { createConsul, consulConfigFromFlags, createLogger, escapeLogField, type Flags, type CommandContext } from '@gantry/core';
import { readState } from './state.ts';
import { computeDrift, type DriftReport, type RecordRef } from './drift.ts';
import { fixOrphans, type FixResult } from './fix-orphans.ts';
import type { AuditWriter } from './writer.ts';

export function driftOptionsFromFlags(f: Flags): { noPassingAfterMs: number; flapPerHour: number; hostTag: string } {
  return { noPassingAfterMs: f.ms('no-passing-after'), flapPerHour: f.int('flap-per-hour'), hostTag: f.str('host-tag') };
}

const x = (s: string | null | undefined): string => escapeLogField(s ?? '');

export function ago(ms: number | null): string {
  if (ms === null) return 'unknown';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

const where = (r: RecordRef): string => `${x(r.service)} ${x(r.id)} (node ${x(r.node)}, ${x(r.address)}:${r.port})`;

export function formatDrift(d: DriftReport, now = Date.parse(d.generatedAt)): string {
  const out: string[] = [];
  const section = (title: string, lines: string[]): void => { if (lines.length) out.push(`${title} (${lines.length})`, ...lines.map((l) => `  ${l}`)); };
  out.push(`registry: ${d.counts.instances} instances of ${d.counts.services} services; writers: ${d.counts.owners} (${d.counts.ownersAlive} alive)`);
  section('writers', d.writers.map((w) => `${w.alive ? 'alive' : 'GONE '}  ${x(w.owner)}  ${x(w.source)}  last heartbeat ${ago(now - Date.parse(w.lastSeen))} ago  version ${x(w.version)}  last full pass ${w.lastFullPass ?? 'none'}`));
  section('orphans: records whose owner is gone', d.orphans.map((o) => `${where(o)}  owner ${x(o.owner)} gone ${o.lastSeen ? ago(o.goneForMs) : '(no heartbeat ever seen)'}${o.lastEntry ? `  last entry: ${x(o.lastEntry.time)} ${x(o.lastEntry.action)} reason=${x(o.lastEntry.reason)} by ${x(o.lastEntry.owner)}` : ''}`));
  section('duplicate address:port', d.duplicateAddresses.map((g) => `${x(g.address)}:${g.port}  ${g.records.map((r) => `${x(r.service)}/${x(r.id)}@${x(r.node)}`).join(', ')}`));
  section('names claimed by several services', d.duplicateNames.map((n) => `${n.kind} ${x(n.name)}: ${n.services.map((s) => `${x(s.service)} (CreateIndex ${s.createIndex})`).join(', ')}; ${x(n.winner)} keeps it (earliest registration)`));
  section('services with no passing instance', d.noPassing.map((s) => `${x(s.service)}: ${s.instances} instances, none passing ${s.since ? `since at least ${x(s.since)} (${ago(s.forMs)})` : '(longer than the audit trail knows)'}`));
  section('flapping checks (status changes in the last hour)', d.flapping.map((s) => `${x(s.service)} ${x(s.instance)}: ${s.changes}`));
  section('registrations refused', d.refused.map((r) => `${x(r.time)} ${x(r.source)} ${x(r.originName || r.origin)} ${r.service ? `service ${x(r.service)} ` : ''}by ${x(r.owner)}: ${x(r.reason)}`));
  section('bad heartbeats', d.badHeartbeats.map((b) => x(b.error)));
  section('unowned records (registered by hand or by another tool; not drift)', d.unowned.map(where));
  out.push(d.clean ? 'drift: none' : 'drift: found');
  return `${out.join('\n')}\n`;
}

export async function runDrift(f: Flags, ctx: CommandContext): Promise<number> {
  const consul = createConsul(consulConfigFromFlags(f));
  let writer: AuditWriter | undefined;
  try {
    const state = await readState({ consul, audit: { url: f.str('audit-redis'), key: f.str('audit-key'), since: new Date(Date.now() - f.ms('window')) } });
    if (state.auditError) ctx.stderr.write(`gantry audit drift: the audit stream could not be read (${x(state.auditError)}): no last entries, flapping or refusals in this report\n`);
    const report = computeDrift(state.records, state.owners, state.bad, state.entries, driftOptionsFromFlags(f));
    let fixes: FixResult[] | undefined;
    if (f.bool('fix-orphans') && report.orphans.length) {
      if (f.bool('apply')) {
        const { AuditWriter: Writer } = await import('./writer.ts');
        writer = new Writer({ url: f.str('audit-redis'), key: f.str('audit-key'), maxLen: 100_000, bufferSize: 10_000, log: createLogger({ component: 'audit', level: 'warn', destination: ctx.stderr }) });
      }
      const w = writer;
      fixes = await fixOrphans({ consul, orphans: report.orphans, records: state.records, graceMs: f.ms('orphan-grace'), apply: f.bool('apply'), ...(w ? { audit: (e) => w.append(e) } : {}) });
    }
    if (f.bool('json')) ctx.stdout.write(`${JSON.stringify(fixes ? { ...report, fixes: fixes.map((r) => ({ node: r.orphan.node, id: r.orphan.id, service: r.orphan.service, owner: r.orphan.owner, action: r.action, why: r.why })) } : report)}\n`);
    else {
      ctx.stdout.write(formatDrift(report));
      if (fixes) ctx.stdout.write(fixes.map((r) => `fix-orphans: ${r.action.padEnd(12)} ${where(r.orphan)}: ${x(r.why)}\n`).join(''));
    }
    return report.clean ? 0 : 1;
  } finally {
    if (writer) {
      await writer.close(5000);
      if (writer.droppedCount) ctx.stderr.write(`gantry audit drift: ${writer.droppedCount} audit entries of removals could not be written\n`);
    }
    consul.close();
  }
}
