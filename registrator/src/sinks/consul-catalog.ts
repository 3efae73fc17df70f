// Writes instances into the Consul catalog under a synthetic node (as consul-k8s
// catalog sync does), with a Gantry-managed health check per instance whose
// status the source sets (EndpointSlice ready → passing, not ready → critical).
// Catalog records do not belong to any one agent, so a new leader of a
// replicated registrator finds and keeps them.
import { META, specHash, type ConsulClient, type ServiceInstance, type OwnerId, type HealthStatus } from '@gantry/core';
import { readBack, type ConsulService } from './read-back.ts';

export interface CatalogSinkOptions {
  consul: ConsulClient;
  /** the synthetic node the records live on, e.g. k8s-sync-<cluster> */
  node: string;
  /** its address (a placeholder; instances carry their own) */
  nodeAddress?: string;
  /**
   * a Gantry-managed check per instance carrying the source's status (default
   * true). A source whose instances are always passing (ZooKeeper: a provider is
   * there or not) writes none: a check per instance made Consul 1.22's catalog
   * writes grow with the number of checks it holds (5,000 services in /v1/txn
   * batches: 2.8 s without checks, 24 s with them, measured here), and an
   * instance without checks is passing to every health query.
   */
  sourceCheck?: boolean;
}

interface HealthCheck { CheckID: string; ServiceID: string; Status: HealthStatus }

export const checkIdOf = (id: string): string => `gantry:${id}`;

export class ConsulCatalogSink {
  private readonly o: CatalogSinkOptions;
  constructor(o: CatalogSinkOptions) {
    this.o = o;
  }

  /** Every instance on our node whose gantry-owner is `owner`. */
  async owned(owner: OwnerId): Promise<ServiceInstance[]> {
    const node = encodeURIComponent(this.o.node);
    const [svcs, checks] = await Promise.all([
      this.o.consul.request<{ Services?: ConsulService[] } | null>('GET', `/v1/catalog/node-services/${node}`, { query: { filter: `Meta["${META.owner}"] == "${owner}"` } }),
      this.checks ? this.o.consul.request<HealthCheck[] | null>('GET', `/v1/health/node/${node}`) : { body: [] as HealthCheck[] },
    ]);
    const status = new Map<string, HealthStatus>();
    for (const c of checks.body ?? []) if (c.CheckID === checkIdOf(c.ServiceID)) status.set(c.ServiceID, c.Status);
    return (svcs.body?.Services ?? []).map((s) => readBack(s, 'kubernetes', status.get(s.ID)));
  }

  private service(i: ServiceInstance): Record<string, unknown> {
    return {
      ID: i.id, Service: i.name, Address: i.address, Port: i.port, Tags: i.tags, Meta: { ...i.meta, [META.spec]: specHash(i) },
      ...(i.weights ? { Weights: { Passing: i.weights.passing, Warning: i.weights.warning } } : {}),
    };
  }

  private check(i: ServiceInstance): Record<string, unknown> {
    return {
      Node: this.o.node,
      CheckID: checkIdOf(i.id),
      Name: 'Gantry: source health',
      ServiceID: i.id,
      Status: i.status ?? 'passing',
      Notes: i.status === 'critical' ? 'endpoint not ready' : 'endpoint ready',
    };
  }

  async register(i: ServiceInstance): Promise<void> {
    await this.o.consul.request('PUT', '/v1/catalog/register', {
      body: {
        Node: this.o.node,
        Address: this.o.nodeAddress ?? '127.0.0.1',
        NodeMeta: { 'external-source': 'gantry', [META.source]: i.origin.source },
        SkipNodeUpdate: true,
        Service: this.service(i),
        ...(this.checks ? { Checks: [this.check(i)] } : {}),
      },
    });
  }

  async deregister(i: Pick<ServiceInstance, 'id'>): Promise<void> {
    await this.o.consul.request('PUT', '/v1/catalog/deregister', { body: { Node: this.o.node, ServiceID: i.id } });
  }

  /**
   * Many changes in one Consul transaction (/v1/txn: atomic, one Raft write):
   * 3,000 catalog registrations take ~15 s one by one here and a fraction of
   * that in batches (bench/kubernetes.ts). Rejects when the transaction was
   * rolled back; the reconciler then applies that batch one by one.
   */
  async applyBatch(entries: ReadonlyArray<{ action: string; instance: ServiceInstance }>): Promise<void> {
    if (!this.nodeRegistered) {
      await this.o.consul.request('PUT', '/v1/catalog/register', { body: { Node: this.o.node, Address: this.o.nodeAddress ?? '127.0.0.1', NodeMeta: { 'external-source': 'gantry' } } });
      this.nodeRegistered = true;
    }
    const ops: unknown[] = [];
    for (const { action, instance } of entries) {
      if (action === 'deregister') ops.push({ Service: { Verb: 'delete', Node: this.o.node, Service: { ID: instance.id, Service: instance.name } } }); // Consul 1.22 wants the name too
      else {
        ops.push({ Service: { Verb: 'set', Node: this.o.node, Service: this.service(instance) } });
        if (this.checks) ops.push({ Check: { Verb: 'set', Check: this.check(instance) } });
      }
    }
    try {
      await this.o.consul.request('PUT', '/v1/txn', { body: ops });
    } catch (err) {
      this.nodeRegistered = false; // e.g. Consul lost its state: register the node again next time
      throw err;
    }
  }

  private get checks(): boolean {
    return this.o.sourceCheck ?? true;
  }

  /** how many changes applyBatch takes at once (two operations each with the check, one without; 64 operations a transaction) */
  get batchSize(): number {
    return this.checks ? 32 : 64;
  }

  private nodeRegistered = false;
}
