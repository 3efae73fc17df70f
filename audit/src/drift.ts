// "Is the registry telling the truth?" — computed from Consul's catalog and
// health, the writers' heartbeats and the audit stream. Pure: the inputs are
// read elsewhere (catalog.ts, writers.ts, reader.ts), so the same function
// serves the CLI, the page and the benchmark.
import { escapeDnsLabel } from '@gantry/core';
import type { ServiceRecord } from './catalog.ts';
import type { OwnerLiveness, BadHeartbeat } from './writers.ts';
import type { AuditEntry } from './entry.ts';

export interface DriftOptions {
  now?: number;
  /** a service with no passing instance for longer than this is reported */
  noPassingAfterMs: number;
  /** status changes per hour at or above which a check is flapping */
  flapPerHour: number;
  /** tag prefix of extra Host names (the templater's --host-tag) */
  hostTag: string;
}

export interface RecordRef { node: string; id: string; service: string; address: string; port: number; owner: string | null; createIndex: number }

export interface Orphan extends RecordRef {
  source: string;
  /** the owner's last heartbeat (ISO), null when none was ever seen */
  lastSeen: string | null;
  goneForMs: number | null;
  lastEntry: (AuditEntry & { id: string }) | null;
}

export interface NameClaim { name: string; kind: 'host' | 'dns'; winner: string; services: Array<{ service: string; createIndex: number }> }

export interface DriftReport {
  generatedAt: string;
  counts: { instances: number; services: number; owners: number; ownersAlive: number; auditEntries: number };
  writers: Array<{ owner: string; alive: boolean; source: string; lastSeen: string; instances: number; version: string; lastFullPass: string | null }>;
  orphans: Orphan[];
  unowned: RecordRef[];
  duplicateAddresses: Array<{ address: string; port: number; records: RecordRef[] }>;
  duplicateNames: NameClaim[];
  /** since: when the audit trail saw the service's last passing instance go (null: longer than the trail knows) */
  noPassing: Array<{ service: string; instances: number; since: string | null; forMs: number | null }>;
  flapping: Array<{ service: string; instance: string; changes: number }>;
  refused: Array<{ time: string; owner: string; source: string; origin: string; originName: string; service: string; reason: string }>;
  badHeartbeats: BadHeartbeat[];
  /** nothing above but the unowned list (hand registrations are not drift) */
  clean: boolean;
}

const ref = (r: ServiceRecord): RecordRef => ({ node: r.node, id: r.id, service: r.service, address: r.address, port: r.port, owner: r.owner ?? null, createIndex: r.createIndex });

/** Consul's own service on a server node is neither a registration nor drift. */
const isConsulItself = (r: ServiceRecord): boolean => r.service === 'consul' && r.id === 'consul';

export function computeDrift(records: ServiceRecord[], owners: Map<string, OwnerLiveness>, bad: BadHeartbeat[], entries: Array<AuditEntry & { id: string }>, o: DriftOptions): DriftReport {
  const now = o.now ?? Date.now();
  const recs = records.filter((r) => !isConsulItself(r));

  // the audit trail, indexed once
  const lastByInstance = new Map<string, AuditEntry & { id: string }>();
  // per service, from the trail in order: its passing instances, and since when it has had none
  const passingTrail = new Map<string, { passing: Set<string>; noneSince: string | null }>();
  const statusChanges = new Map<string, { service: string; instance: string; n: number }>();
  const refused: DriftReport['refused'] = [];
  // the writer's times are toISOString() (24 characters, UTC): compared as text, no Date.parse
  // per entry; any other form is parsed
  const hourAgoMs = now - 3_600_000;
  const hourAgo = new Date(hourAgoMs).toISOString();
  const recent = (t: string): boolean => (t.length === 24 && t.endsWith('Z') ? t >= hourAgo : Date.parse(t) >= hourAgoMs);
  for (const e of entries) {
    if (e.instance) lastByInstance.set(e.instance, e);
    if (e.service && e.instance && (e.action === 'register' || e.action === 'update' || e.action === 'status' || e.action === 'deregister') && e.ok !== 'false') {
      let p = passingTrail.get(e.service);
      if (!p) passingTrail.set(e.service, (p = { passing: new Set<string>(), noneSince: e.time }));
      // an instance registered without a check ('' status) is passing, as Consul counts it
      const passing = e.action !== 'deregister' && (e.status === 'passing' || (e.status === '' && e.action !== 'status'));
      if (passing) p.passing.add(e.instance); else p.passing.delete(e.instance);
      if (p.passing.size) p.noneSince = null;
      else p.noneSince ??= e.time;
    }
    if (e.action === 'status' && recent(e.time)) {
      const k = `${e.service}\u0000${e.instance}`;
      const s = statusChanges.get(k);
      if (s) s.n++; else statusChanges.set(k, { service: e.service, instance: e.instance, n: 1 });
    }
    if (e.action === 'refused') refused.push({ time: e.time, owner: e.owner, source: e.source, origin: e.origin, originName: e.originName, service: e.service, reason: e.error || e.reason });
  }

  const orphans: Orphan[] = [];
  const unowned: RecordRef[] = [];
  const byAddr = new Map<string, ServiceRecord[]>();
  const byService = new Map<string, ServiceRecord[]>();
  for (const r of recs) {
    if (!r.owner) unowned.push(ref(r));
    else {
      const w = owners.get(r.owner);
      if (!w?.alive) {
        const lastSeen = w?.lastSeen ?? null;
        orphans.push({ ...ref(r), source: r.meta['gantry-source'] ?? w?.source ?? '', lastSeen, goneForMs: lastSeen ? now - Date.parse(lastSeen) : null, lastEntry: lastByInstance.get(r.id) ?? null });
      }
    }
    if (r.port > 0) {
      const k = `${r.address}\u0000${r.port}`;
      const l = byAddr.get(k);
      if (l) l.push(r); else byAddr.set(k, [r]);
    }
    const l = byService.get(r.service);
    if (l) l.push(r); else byService.set(r.service, [r]);
  }

  const duplicateAddresses: DriftReport['duplicateAddresses'] = [];
  for (const list of byAddr.values()) {
    if (list.length > 1) duplicateAddresses.push({ address: list[0]!.address, port: list[0]!.port, records: list.map(ref) });
  }

  // names: Host names from host tags, and DNS labels services escape to
  const claims = new Map<string, Map<string, number>>(); // "kind\0name" → service → earliest CreateIndex
  const claim = (kind: 'host' | 'dns', name: string, service: string, idx: number): void => {
    const k = `${kind}\u0000${name}`;
    let m = claims.get(k);
    if (!m) claims.set(k, (m = new Map<string, number>()));
    m.set(service, Math.min(m.get(service) ?? Infinity, idx));
  };
  const hostPrefix = `${o.hostTag}=`;
  for (const [service, list] of byService) {
    const label = escapeDnsLabel(service);
    for (const r of list) {
      if (label.ok) claim('dns', label.value, service, r.createIndex);
      for (const t of r.tags) if (t.startsWith(hostPrefix)) claim('host', t.slice(hostPrefix.length).toLowerCase().replace(/\.$/, ''), service, r.createIndex);
    }
  }
  const duplicateNames: NameClaim[] = [];
  for (const [k, m] of claims) {
    if (m.size < 2) continue;
    const [kind, name] = k.split('\u0000') as ['host' | 'dns', string];
    // the templater's rule: the earliest registration (Consul's CreateIndex) keeps the name
    const services = [...m].map(([service, createIndex]) => ({ service, createIndex })).sort((a, b) => a.createIndex - b.createIndex || a.service.localeCompare(b.service));
    duplicateNames.push({ name, kind, winner: services[0]!.service, services });
  }

  const noPassing: DriftReport['noPassing'] = [];
  for (const [service, list] of byService) {
    if (list.some((r) => r.health === 'passing')) continue;
    // since the trail last saw the service lose its last passing instance; null when the trail
    // does not know (no entry about it in the window, or Consul's own checks failed it)
    const since = passingTrail.get(service)?.noneSince ?? null;
    const forMs = since ? now - Date.parse(since) : null;
    if (forMs === null || forMs >= o.noPassingAfterMs) noPassing.push({ service, instances: list.length, since, forMs });
  }

  const flapping = [...statusChanges.values()].filter((s) => s.n >= o.flapPerHour).map((s) => ({ service: s.service, instance: s.instance, changes: s.n }));

  const writers = [...owners.values()].map((w) => {
    const newest = w.instances.reduce((a, b) => (Date.parse(b.heartbeatAt) > Date.parse(a.heartbeatAt) ? b : a));
    return { owner: w.owner, alive: w.alive, source: w.source, lastSeen: w.lastSeen, instances: w.instances.length, version: newest.version, lastFullPass: newest.lastFullPass?.at ?? null };
  });

  const report: DriftReport = {
    generatedAt: new Date(now).toISOString(),
    counts: { instances: recs.length, services: byService.size, owners: owners.size, ownersAlive: writers.filter((w) => w.alive).length, auditEntries: entries.length },
    writers, orphans, unowned, duplicateAddresses, duplicateNames, noPassing, flapping, refused, badHeartbeats: bad, clean: false,
  };
  report.clean = !orphans.length && !duplicateAddresses.length && !duplicateNames.length && !noPassing.length && !flapping.length && !refused.length && !bad.length;
  return report;
}
