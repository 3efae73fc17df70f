// `gantry audit drift --fix-orphans`: deregisters records whose owner has been
// gone longer than a grace period, each removal written to the audit stream.
// Dry run unless --apply. A record on an agent node must be removed through
// that agent (else the agent's anti-entropy puts it back): only the agent we
// talk to is used; a record of another agent's node is reported, not touched.
import { hostname } from 'node:os';
import { errorMessage, type ConsulClient } from '@gantry/core';
import type { ServiceRecord } from './catalog.ts';
import type { Orphan } from './drift.ts';
import type { AuditEntry } from './entry.ts';

export interface FixResult { orphan: Orphan; action: 'removed' | 'would-remove' | 'kept' | 'failed'; why: string }

export interface FixOptions {
  consul: ConsulClient;
  orphans: Orphan[];
  records: ServiceRecord[];
  graceMs: number;
  apply: boolean;
  /** audit entries of removals go here */
  audit?: (e: AuditEntry) => void;
}

export async function fixOrphans(o: FixOptions): Promise<FixResult[]> {
  const self = await o.consul.request<{ Config?: { NodeName?: string } }>('GET', '/v1/agent/self');
  const localNode = self.body.Config?.NodeName ?? '';
  const byKey = new Map(o.records.map((r) => [`${r.node}\u0000${r.id}`, r]));
  const out: FixResult[] = [];
  for (const orphan of o.orphans) {
    const r = byKey.get(`${orphan.node}\u0000${orphan.id}`);
    if (orphan.goneForMs === null) { out.push({ orphan, action: 'kept', why: 'no heartbeat of its owner was ever seen (an older writer may still run)' }); continue; }
    if (orphan.goneForMs < o.graceMs) { out.push({ orphan, action: 'kept', why: `owner gone ${Math.round(orphan.goneForMs / 1000)}s, less than the grace period` }); continue; }
    const viaAgent = r?.agentNode ?? true;
    if (viaAgent && orphan.node !== localNode) { out.push({ orphan, action: 'kept', why: `registered through the agent of node ${orphan.node}: run against that agent (--consul-addr)` }); continue; }
    if (!o.apply) { out.push({ orphan, action: 'would-remove', why: 'dry run (add --apply)' }); continue; }
    try {
      if (viaAgent) await o.consul.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(orphan.id)}`);
      else await o.consul.request('PUT', '/v1/catalog/deregister', { body: { Node: orphan.node, ServiceID: orphan.id } });
      out.push({ orphan, action: 'removed', why: `owner ${orphan.owner} gone ${Math.round(orphan.goneForMs / 1000)}s` });
      o.audit?.({
        time: new Date().toISOString(), owner: `gantry-audit@${hostname()}`, action: 'deregister', service: orphan.service, instance: orphan.id,
        source: orphan.source, origin: r?.meta['gantry-origin'] ?? '', originName: r?.meta['docker-container'] ?? '', image: r?.meta['docker-image'] ?? '',
        host: hostname(), reason: 'fix-orphans', ok: 'true', error: '', status: '',
        detail: `orphan of ${orphan.owner ?? ''} (last heartbeat ${orphan.lastSeen ?? 'never'}) on node ${orphan.node}`,
      });
    } catch (err) {
      out.push({ orphan, action: 'failed', why: errorMessage(err) });
    }
  }
  return out;
}
