// Registers instances with the local Consul agent (/v1/agent/service/register),
// as gliderlabs/registrator does on every Docker host. A status the source knows
// (Docker HEALTHCHECK) is a TTL check Gantry keeps updated; a paused container
// is put in maintenance. `changes()` notices when the agent lost our
// registrations (agent restart) so the reconciler registers them again.
import {
  META, specHash, errorMessage, escapeLogField, sleep, Backoff, BlockingQuery,
  type ConsulClient, type ServiceInstance, type OwnerId, type HealthStatus, type CheckSpec, type Logger,
} from '@gantry/core';
import { readBack, type ConsulService } from './read-back.ts';

export interface AgentSinkOptions {
  consul: ConsulClient;
  owner: OwnerId;
  log: Logger;
  /** TTL of the status checks Gantry keeps; refreshed every third of it */
  statusTtlMs?: number;
  /**
   * records of another owner on this agent that are ours too: a predecessor's
   * (the default owner used to be made from the hostname, which changes when
   * the registrator's container is re-created)
   */
  adopt?: (owner: string) => boolean;
}

interface AgentCheck { CheckID: string; ServiceID: string; Status: HealthStatus }

export const statusCheckId = (id: string): string => `gantry:${id}`;
const maintenanceCheckId = (id: string): string => `_service_maintenance:${id}`;

function checkBody(c: CheckSpec, i: number): Record<string, unknown> {
  const common = {
    Name: `${c.kind.toUpperCase()} check ${i + 1}`,
    ...('interval' in c ? { Interval: c.interval } : {}),
    ...(c.kind !== 'ttl' && c.timeout ? { Timeout: c.timeout } : {}),
    ...(c.deregisterAfter ? { DeregisterCriticalServiceAfter: c.deregisterAfter } : {}),
    ...(c.initialStatus ? { Status: c.initialStatus } : {}),
  };
  switch (c.kind) {
    case 'http': case 'https': return { ...common, HTTP: c.url, ...(c.method ? { Method: c.method } : {}), ...(c.tlsSkipVerify ? { TLSSkipVerify: true } : {}) };
    case 'tcp': return { ...common, TCP: c.address };
    case 'grpc': return { ...common, GRPC: c.address, ...(c.useTls ? { GRPCUseTLS: true } : {}) };
    case 'script': return { ...common, Args: c.args };
    case 'ttl': return { ...common, TTL: c.ttl, ...(c.note ? { Notes: c.note } : {}) };
  }
}

export class ConsulAgentSink {
  private readonly o: AgentSinkOptions;
  /** status checks we keep alive: check id → status */
  private readonly kept = new Map<string, HealthStatus>();
  private readonly ttlMs: number;
  /** the IDs we registered and believe the agent holds */
  private readonly mine = new Set<string>();
  constructor(o: AgentSinkOptions) {
    this.o = o;
    this.ttlMs = o.statusTtlMs ?? 60_000;
  }

  async owned(owner: OwnerId): Promise<ServiceInstance[]> {
    const adopt = this.o.adopt;
    const filter = adopt ? `Meta["${META.source}"] == "docker"` : `Meta["${META.owner}"] == "${owner}"`;
    const [svcs, checks] = await Promise.all([
      this.o.consul.request<Record<string, ConsulService>>('GET', '/v1/agent/services', { query: { filter } }),
      this.o.consul.request<Record<string, AgentCheck>>('GET', '/v1/agent/checks'),
    ]);
    const checkMap = checks.body ?? {};
    const list = Object.values(svcs.body ?? {}).filter((s) => {
      const o = s.Meta?.[META.owner] ?? '';
      return o === owner || (adopt !== undefined && o !== '' && adopt(o));
    });
    const adopted = new Set(list.filter((s) => s.Meta?.[META.owner] !== owner).map((s) => s.Meta?.[META.owner] ?? ''));
    if (adopted.size) this.o.log.info({ owner, predecessors: [...adopted].map((o) => escapeLogField(o)), records: list.length }, 'adopting the records of an earlier registrator on this agent');
    this.mine.clear();
    for (const s of list) this.mine.add(s.ID);
    return list.map((s) => readBack(s, 'docker', checkMap[statusCheckId(s.ID)]?.Status, Boolean(checkMap[maintenanceCheckId(s.ID)])));
  }

  async register(i: ServiceInstance, previous?: ServiceInstance): Promise<void> {
    const c = this.o.consul;
    const unchanged = previous && previous.meta[META.spec] === specHash(i);
    if (!unchanged) {
      const checks = i.checks.map(checkBody);
      if (i.status) checks.push({ CheckID: statusCheckId(i.id), Name: 'Docker HEALTHCHECK (kept by Gantry)', TTL: `${Math.ceil(this.ttlMs / 1000)}s`, Status: i.status });
      await c.request('PUT', '/v1/agent/service/register', {
        query: { 'replace-existing-checks': true },
        body: {
          ID: i.id, Name: i.name, Address: i.address, Port: i.port, Tags: i.tags,
          Meta: { ...i.meta, [META.spec]: specHash(i) },
          ...(i.weights ? { Weights: { Passing: i.weights.passing, Warning: i.weights.warning } } : {}),
          Checks: checks,
        },
      });
    } else if (i.status && previous?.status !== i.status) {
      await this.updateStatus(i.id, i.status);
    }
    this.mine.add(i.id);
    if (i.status) this.kept.set(statusCheckId(i.id), i.status); else this.kept.delete(statusCheckId(i.id));
    if (Boolean(previous?.maintenance) !== Boolean(i.maintenance) || (!unchanged && i.maintenance)) {
      await c.request('PUT', `/v1/agent/service/maintenance/${encodeURIComponent(i.id)}`, { query: { enable: Boolean(i.maintenance), reason: 'container paused (gantry)' } });
    }
  }

  private async updateStatus(id: string, status: HealthStatus): Promise<void> {
    await this.o.consul.request('PUT', `/v1/agent/check/update/${encodeURIComponent(statusCheckId(id))}`, { body: { Status: status, Output: `Docker health: ${status}` } });
  }

  async deregister(i: Pick<ServiceInstance, 'id'>): Promise<void> {
    this.kept.delete(statusCheckId(i.id));
    this.mine.delete(i.id);
    await this.o.consul.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(i.id)}`);
  }

  /**
   * Yields when the agent lost services we registered (an agent restart, someone
   * deregistering them). The agent's own service list cannot be watched (it
   * answers at once, whatever hash or index is sent), so this is a blocking
   * query on the catalog's view of this agent's node, filtered to our owner;
   * when a service we registered is missing there, the agent's list (the
   * source of truth, ahead of the catalog by its anti-entropy sync) confirms it
   * before a full pass is asked for. Our own writes wake the query too; they do
   * not count. A break in the connection to Consul (agent restart) counts. Also
   * keeps the status TTLs alive.
   */
  async *changes(signal: AbortSignal): AsyncIterable<void> {
    const refresh = setInterval(() => {
      for (const [checkId, status] of this.kept) {
        this.o.consul.request('PUT', `/v1/agent/check/update/${encodeURIComponent(checkId)}`, { body: { Status: status, Output: `Docker health: ${status}` } })
          .catch((err: unknown) => this.o.log.debug({ check: checkId, err: errorMessage(err) }, 'status refresh failed'));
      }
    }, Math.max(1000, Math.floor(this.ttlMs / 3)));
    const backoff = new Backoff({ baseMs: 200, maxMs: 10_000 });
    const filter = `Meta["${META.owner}"] == "${this.o.owner}"`;
    let query: { node: string; q: BlockingQuery<{ Services?: Array<{ ID: string }> } | null> } | undefined;
    let wasDown = false;
    try {
      while (!signal.aborted) {
        /** the failure came from the blocking query, which slept its own backoff before throwing */
        let inQuery = false;
        try {
          // after a break the agent may be another one (restarted, renamed): ask its node name again
          if (!query || wasDown) {
            const node = (await this.o.consul.request<{ Config?: { NodeName?: string } }>('GET', '/v1/agent/self', { signal })).body?.Config?.NodeName;
            if (!node) throw new Error('the agent did not say its node name (/v1/agent/self)');
            if (query?.node !== node) {
              query = {
                node,
                // core's blocking query: index rules, known leader, spacing and rate (our own writes wake it too), backoff
                q: new BlockingQuery({
                  consul: this.o.consul, path: `/v1/catalog/node-services/${encodeURIComponent(node)}`, query: { filter },
                  endpoint: 'agent sink records', waitMs: 300_000, minSpacingMs: 50, rate: { perSecond: 10, burst: 10 },
                  backoff: { baseMs: 200, maxMs: 10_000 }, signal,
                }),
              };
            }
          }
          inQuery = true;
          const res = await query.q.next({ throwErrors: true });
          inQuery = false;
          const inCatalog = new Set((res.body?.Services ?? []).map((sv) => sv.ID));
          let lost = false;
          if (!wasDown && [...this.mine].some((id) => !inCatalog.has(id))) {
            const agent = await this.o.consul.request<Record<string, unknown>>('GET', '/v1/agent/services', { query: { filter }, signal });
            const held = agent.body ?? {};
            lost = [...this.mine].some((id) => !(id in held));
          }
          if (lost || wasDown) yield;
          wasDown = false;
          backoff.reset();
        } catch (err) {
          if (signal.aborted) return;
          this.o.log.debug({ err: errorMessage(err) }, 'watch of our services in Consul failed; retrying');
          if (!inQuery) await sleep(backoff.next(), signal).catch(() => undefined);
          wasDown = true;
        }
      }
    } finally {
      clearInterval(refresh);
    }
  }
}
