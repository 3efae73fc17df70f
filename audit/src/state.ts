// One read of what the drift report and the page need: Consul's catalog and
// health, the writers' heartbeats, and the audit stream over a window.
import { errorMessage, type ConsulClient } from '@gantry/core';
import { readCatalog, type ServiceRecord } from './catalog.ts';
import { readWriters, type OwnerLiveness, type BadHeartbeat } from './writers.ts';
import { readAudit } from './reader.ts';
import type { AuditEntry } from './entry.ts';

export interface RegistryState {
  records: ServiceRecord[];
  owners: Map<string, OwnerLiveness>;
  bad: BadHeartbeat[];
  entries: Array<AuditEntry & { id: string }>;
  /** the audit stream could not be read: the report lacks what it alone knows */
  auditError: string | null;
  ms: { consul: number; audit: number };
}

export interface StateOptions {
  consul: ConsulClient;
  /** audit stream; undefined = not read */
  audit?: { url: string; key: string; since: Date; limit?: number };
}

export async function readState(o: StateOptions): Promise<RegistryState> {
  const t0 = performance.now();
  const auditRead = o.audit
    ? readAudit({ url: o.audit.url, key: o.audit.key, since: o.audit.since, limit: o.audit.limit ?? 200_000 })
      .then((entries) => ({ entries, error: null }), (err: unknown) => ({ entries: [], error: errorMessage(err) }))
      .then((r) => ({ ...r, ms: performance.now() - t0 }))
    : Promise.resolve({ entries: [], error: null, ms: 0 });
  const [catalog, writers, audit] = await Promise.all([readCatalog(o.consul), readWriters(o.consul), auditRead]);
  return { records: catalog.records, owners: writers.owners, bad: writers.bad, entries: audit.entries, auditError: audit.error, ms: { consul: catalog.ms, audit: audit.ms } };
}
