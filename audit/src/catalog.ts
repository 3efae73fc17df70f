// Everything Consul holds, read the cheap way: the node list, each node's
// services (with CreateIndex) and every check in one /v1/health/state/any —
// a handful of requests whatever the number of services.
import { META, mapLimit, type ConsulClient, type HealthStatus } from '@gantry/core';

export interface CheckRecord { node: string; checkId: string; name: string; status: string; serviceId: string; output: string }

export interface ServiceRecord {
  node: string;
  nodeAddress: string;
  /** the node has an agent (serfHealth); otherwise it was made through the catalog API */
  agentNode: boolean;
  id: string;
  service: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  createIndex: number;
  modifyIndex: number;
  /** Meta.gantry-owner, when Gantry wrote it */
  owner: string | undefined;
  /** worst of the instance's checks and its node's checks; passing when it has none */
  health: HealthStatus;
  checks: CheckRecord[];
}

export interface CatalogRead { records: ServiceRecord[]; nodes: number; checks: number; ms: number }

interface NodeEntry { Node: string; Address: string }
interface NodeServices { Node?: { Node: string; Address: string } | null; Services?: Array<{ ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null; CreateIndex: number; ModifyIndex: number }> | null }
interface HealthCheck { Node: string; CheckID: string; Name: string; Status: string; ServiceID: string; Output: string }

const rank: Record<string, number> = { passing: 0, warning: 1, critical: 2, maintenance: 2 };

/** Reads the raw catalog and health (what the bench baseline times alone). */
export async function fetchCatalog(consul: ConsulClient, concurrency = 8): Promise<{ nodes: NodeEntry[]; services: NodeServices[]; checks: HealthCheck[] }> {
  const [nodesRes, checksRes] = await Promise.all([
    consul.request<NodeEntry[]>('GET', '/v1/catalog/nodes', { timeoutMs: 30_000 }),
    consul.request<HealthCheck[]>('GET', '/v1/health/state/any', { timeoutMs: 30_000 }),
  ]);
  const nodes = nodesRes.body ?? [];
  const services = await mapLimit(nodes, concurrency, async (n) => {
    const res = await consul.request<NodeServices | null>('GET', `/v1/catalog/node-services/${encodeURIComponent(n.Node)}`, { timeoutMs: 30_000 });
    return res.body ?? {};
  });
  return { nodes, services, checks: checksRes.body ?? [] };
}

export async function readCatalog(consul: ConsulClient): Promise<CatalogRead> {
  const t0 = performance.now();
  const raw = await fetchCatalog(consul);
  const byService = new Map<string, CheckRecord[]>();
  const byNode = new Map<string, CheckRecord[]>();
  const agentNodes = new Set<string>();
  for (const c of raw.checks) {
    const rec: CheckRecord = { node: c.Node, checkId: c.CheckID, name: c.Name, status: c.Status, serviceId: c.ServiceID, output: c.Output };
    if (c.CheckID === 'serfHealth') agentNodes.add(c.Node);
    if (c.ServiceID) {
      const k = `${c.Node}\u0000${c.ServiceID}`;
      const list = byService.get(k);
      if (list) list.push(rec); else byService.set(k, [rec]);
    } else {
      const list = byNode.get(c.Node);
      if (list) list.push(rec); else byNode.set(c.Node, [rec]);
    }
  }
  const records: ServiceRecord[] = [];
  raw.nodes.forEach((n, i) => {
    const nodeChecks = byNode.get(n.Node) ?? [];
    for (const s of raw.services[i]?.Services ?? []) {
      const checks = [...(byService.get(`${n.Node}\u0000${s.ID}`) ?? []), ...nodeChecks];
      let worst = 0;
      for (const c of checks) worst = Math.max(worst, rank[c.status] ?? 2);
      const meta = s.Meta ?? {};
      records.push({
        node: n.Node, nodeAddress: n.Address, agentNode: agentNodes.has(n.Node),
        id: s.ID, service: s.Service, address: s.Address || n.Address, port: s.Port, tags: s.Tags ?? [], meta,
        createIndex: s.CreateIndex, modifyIndex: s.ModifyIndex, owner: meta[META.owner] || undefined,
        health: (['passing', 'warning', 'critical'] as const)[worst]!, checks,
      });
    }
  });
  return { records, nodes: raw.nodes.length, checks: raw.checks.length, ms: performance.now() - t0 };
}
