// The Consul catalog watcher. However many services there are, it holds a
// constant number of blocking queries:
//   /v1/catalog/services   — its index moves on every registration change
//   /v1/health/state/any   — every check; its index moves on every health change
//   /v1/kv/<prefix>?recurse — only when a KV prefix is watched
// Health changes are applied from /v1/health/state/any itself, with no fetch.
// A registration change is located by node, never guessed and never waited
// for with a timer: each node's services carry a per-node index (the
// X-Consul-Index of /v1/catalog/node-services/<node>, moved by every
// registration or removal on that node, with or without checks), read cheaply
// with a filter matching nothing (these probes go out with the node listing);
// only nodes whose index moved are read in full, and the instances that
// appeared, went away or changed are applied.
// An instance registered after the checks we hold (still, once the node reads
// are done: the health query usually catches up meanwhile) has its service's
// checks read once (/v1/health/service/<name>), so a check written with its
// instance is never missed. The first sync and a periodic resync (resyncMs, counted in
// stats.resyncs) read every node. A service new in the /v1/catalog/services
// listing (up to 8 at once) is read first on its own (/v1/health/service/<name>:
// instances and checks) and published before the node reads, so a new service
// does not wait for the read of a node holding thousands of instances; the node
// reads still follow, and a publish that would repeat the last is skipped.
// One-shot requests go one at a time: with the
// blocking queries, at most four connections to Consul.
import { GantryError, errorMessage } from '../errors.ts';
import type { ConsulClient } from '../consul.ts';
import type { Logger } from '../logger.ts';
import { mapLimit } from '../concurrency.ts';
import { runBlockingQuery } from './blocking-query.ts';
import {
  instanceKey, worstStatus,
  type CatalogInstance, type CatalogSnapshot, type ConsulCheck, type ConsulHealthEntry, type ConsulKvEntry, type ConsulNodeService, type ConsulNodeServices,
} from './types.ts';

export interface CatalogWatcherOptions {
  consul: ConsulClient;
  log: Logger;
  /** watch the KV pairs under this prefix (no leading slash); undefined: no KV watch */
  kvPrefix?: string | undefined;
  /** max wait of a blocking query (default 5m) */
  waitMs?: number;
  /** minimum time between two queries to one endpoint (default 100ms) */
  minSpacingMs?: number;
  /** one-shot reads (node probes, node and service reads) in flight at once (default 1: ≤ 4 connections in all) */
  fetchConcurrency?: number;
  /** a full read of every node this often, a safety net counted in stats.resyncs (default 5m, 0: never) */
  resyncMs?: number;
  /** every request sent to Consul, by endpoint kind */
  onRequest?: (endpoint: string) => void;
  onRequestError?: (endpoint: string) => void;
  random?: () => number;
}

/** What the watcher did, for tests, metrics and benchmarks. */
export interface CatalogWatcherStats {
  /** snapshots published */
  syncs: number;
  /** full reads of every node (the first sync, resyncs) */
  sweeps: number;
  /** periodic resyncs that fired: the only timer-driven reads */
  resyncs: number;
  /** cheap per-node index reads */
  nodeProbes: number;
  /** full reads of one node's services */
  nodeReads: number;
  /** reads of one service's checks (instances newer than the checks held) */
  serviceReads: number;
  /** one read of every check instead of a read a service (many instances newer than the checks held) */
  bulkCheckReads: number;
  /** services new in the catalog listing read on their own and published before the node reads */
  newServiceReads: number;
}

interface ServiceRecord {
  instances: Map<string, Omit<CatalogInstance, 'status'>>;
}

interface NodeRecord {
  /** X-Consul-Index of /v1/catalog/node-services/<node>: moves with every registration on the node */
  index: bigint;
  /** instance key → service name and what was read (to see what changed) */
  instances: Map<string, { service: string; sig: string }>;
}

interface CheckState {
  index: bigint;
  /** checks of instances, by instance key */
  byInstance: Map<string, ConsulCheck[]>;
  /** node-level checks (serfHealth, node maintenance), by node */
  byNode: Map<string, ConsulCheck[]>;
}

type Listener = (snap: CatalogSnapshot) => void;

/** more services than this with instances newer than the checks held: one read of every check */
const BULK_CHECKS_AFTER = 32;

/** at most this many services new in the listing are read on their own before the node reads */
const NEW_SERVICE_READS = 8;

/** a filter no service matches: the answer is the node's index alone */
const MATCH_NOTHING = encodeURIComponent('ID == "__gantry_index_only__"');

export class CatalogWatcher {
  private readonly o: Required<Omit<CatalogWatcherOptions, 'kvPrefix' | 'onRequest' | 'onRequestError' | 'random'>> & CatalogWatcherOptions;
  private readonly ac = new AbortController();
  private catalog: { index: string; names: string[] } | undefined;
  private checks: CheckState | undefined;
  /** checks read with a single service fetch, newer than the state/any we hold */
  private overrides = new Map<string, { index: bigint; checks: ConsulCheck[] }>();
  private kv: { index: string; entries: Map<string, string> } | undefined;
  private readonly known = new Map<string, ServiceRecord>();
  private readonly nodes = new Map<string, NodeRecord>();
  private syncedCatalog = -1n;
  private syncing: Promise<void> | undefined;
  private again = false;
  private needSweep = true;
  private version = 0;
  /** moves with every change to the instances or the checks held (a publish that would repeat the last one is skipped) */
  private mutations = 0;
  private current: CatalogSnapshot | undefined;
  private readonly listeners = new Set<Listener>();
  private readyResolve!: () => void;
  private readonly readyPromise = new Promise<void>((r) => { this.readyResolve = r; });
  private loops: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private detach: (() => void) | undefined;
  readonly stats: CatalogWatcherStats = { syncs: 0, sweeps: 0, resyncs: 0, nodeProbes: 0, nodeReads: 0, serviceReads: 0, bulkCheckReads: 0, newServiceReads: 0 };
  /** the last error talking to Consul, cleared by the next success */
  lastError: string | undefined;

  constructor(opts: CatalogWatcherOptions) {
    this.o = { waitMs: 300_000, minSpacingMs: 100, fetchConcurrency: 1, resyncMs: 300_000, ...opts };
  }

  /** resolves once catalog, health (and KV) have been read and merged once */
  ready(): Promise<void> { return this.readyPromise; }

  snapshot(): CatalogSnapshot | undefined { return this.current; }

  onChange(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(signal?: AbortSignal): void {
    if (signal) {
      const onAbort = (): void => this.stop();
      signal.addEventListener('abort', onAbort, { once: true });
      this.detach = () => signal.removeEventListener('abort', onAbort);
    }
    const common = {
      consul: this.o.consul, waitMs: this.o.waitMs, minSpacingMs: this.o.minSpacingMs, signal: this.ac.signal,
      random: this.o.random,
    };
    const onError = (endpoint: string) => (err: unknown, attempt: number, delayMs: number): void => {
      this.o.onRequestError?.(endpoint);
      this.lastError = `${endpoint}: ${errorMessage(err)}`;
      this.o.log.warn({ endpoint, attempt, retryInMs: delayMs, err: errorMessage(err) }, 'Consul query failed; keeping the last data');
    };
    this.loops.push(runBlockingQuery<Record<string, string[] | null>>({
      ...common, path: '/v1/catalog/services', endpoint: 'catalog',
      onRequest: () => this.o.onRequest?.('catalog'),
      onError: onError('catalog'),
      onChange: (body, index) => {
        this.lastError = undefined;
        this.catalog = { index, names: Object.keys(body ?? {}) };
        return this.schedule();
      },
    }));
    this.loops.push(runBlockingQuery<ConsulCheck[]>({
      ...common, path: '/v1/health/state/any', endpoint: 'health',
      onRequest: () => this.o.onRequest?.('health'),
      onError: onError('health'),
      onChange: (body, index) => {
        this.lastError = undefined;
        this.checks = indexChecks(body ?? [], BigInt(index));
        for (const [k, ov] of this.overrides) if (ov.index <= this.checks.index) this.overrides.delete(k);
        return this.schedule();
      },
    }));
    if (this.o.kvPrefix !== undefined) {
      const prefix = this.o.kvPrefix.replace(/^\/+/, '');
      this.loops.push(runBlockingQuery<ConsulKvEntry[]>({
        ...common, path: `/v1/kv/${prefix.split('/').map(encodeURIComponent).join('/')}`, query: { recurse: true }, endpoint: 'kv',
        notFound: () => [],
        onRequest: () => this.o.onRequest?.('kv'),
        onError: onError('kv'),
        onChange: (body, index) => {
          this.lastError = undefined;
          const entries = new Map<string, string>();
          for (const e of body ?? []) {
            if (e.Key.endsWith('/') && e.Value === null) continue; // a "folder"
            const rel = e.Key.startsWith(prefix) ? e.Key.slice(prefix.length).replace(/^\/+/, '') : e.Key;
            entries.set(rel, e.Value === null ? '' : Buffer.from(e.Value, 'base64').toString('utf8'));
          }
          this.kv = { index, entries };
          return this.schedule();
        },
      }));
    }
    if (this.o.resyncMs > 0) {
      this.resyncTimer = setInterval(() => { this.stats.resyncs++; this.needSweep = true; void this.schedule(); }, this.o.resyncMs);
      this.resyncTimer.unref();
    }
  }

  stop(): void {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.detach?.();
    this.detach = undefined;
    this.ac.abort(new GantryError('E_STOPPED', 'watcher stopped'));
  }

  /** waits for the blocking loops to end after stop() */
  async closed(): Promise<void> {
    await Promise.allSettled(this.loops);
    await this.syncing?.catch(() => undefined);
  }

  /** one sync at a time; a change during a sync runs another after it */
  private schedule(): Promise<void> {
    if (this.syncing) { this.again = true; return Promise.resolve(); }
    const run = async (): Promise<void> => {
      do {
        this.again = false;
        try {
          await this.sync();
        } catch (err) {
          if (this.ac.signal.aborted) return;
          this.lastError = `sync: ${errorMessage(err)}`;
          this.o.log.warn({ err: errorMessage(err) }, 'reading changed services from Consul failed; keeping the last data, retrying');
          this.o.onRequestError?.('sync');
          // a failed read is retried after a pause (Consul is failing; the blocking queries back off too)
          await new Promise((r) => setTimeout(r, 500 + Math.random() * 500));
          this.again = true;
        }
      } while (this.again && !this.ac.signal.aborted);
    };
    this.syncing = run().finally(() => { this.syncing = undefined; });
    return Promise.resolve();
  }

  private async get<T>(endpoint: string, path: string): Promise<{ body: T; index: bigint }> {
    this.o.onRequest?.(endpoint);
    try {
      const res = await this.o.consul.request<T>('GET', path, { signal: this.ac.signal, timeoutMs: 30_000 });
      if (res.knownLeader === false) throw new GantryError('E_NO_LEADER', `Consul ${path}: answered without a known leader`);
      return { body: res.body, index: BigInt(res.index ?? '0') };
    } catch (err) {
      this.o.onRequestError?.(endpoint);
      throw err;
    }
  }

  private async sync(): Promise<void> {
    const catalog = this.catalog;
    const checks = this.checks;
    if (!catalog || !checks || (this.o.kvPrefix !== undefined && !this.kv)) return;
    const catalogIndex = BigInt(catalog.index);
    /** what was published ahead of the node reads: the same again after them is not published twice */
    let early: { mutations: number; checks: CheckState; kv: unknown } | undefined;
    if (this.needSweep || catalogIndex !== this.syncedCatalog) {
      const all = this.needSweep;
      this.needSweep = false;
      if (all) this.stats.sweeps++;
      try {
        // a service new in the listing is read on its own (instances and checks, one small read)
        // and published before the node reads: a node holding thousands of instances (a
        // catalog-sync node, an external-services node) takes a read of megabytes, which a new
        // service does not wait for. The node reads that follow still settle everything else.
        const fresh = all || this.nodes.size === 0 ? [] : catalog.names.filter((n) => !this.known.has(n));
        if (fresh.length > 0 && fresh.length <= NEW_SERVICE_READS) {
          let added = false;
          for (const name of fresh) added = (await this.readNewService(name)) || added;
          if (added) {
            const published = this.checks ?? checks;
            this.publish(catalog.index, published);
            early = { mutations: this.mutations, checks: published, kv: this.kv };
          }
        }
        const newer = await this.readNodes(all, checks.index);
        // instances registered after the checks we hold: their checks, read with them (one read
        // of every check when there are many: a start, a sweep, a bulk registration). The blocking
        // health query often answers while the nodes are read (a check written with its instance
        // moves both): a service whose instances the checks now held cover needs no read
        const held = this.checks?.index ?? checks.index;
        const behind = new Set([...newer].filter((name) => [...(this.known.get(name)?.instances.values() ?? [])].some((i) => BigInt(i.modifyIndex) > held)));
        if (behind.size > BULK_CHECKS_AFTER) await this.readAllChecks(behind, checks.index);
        else await mapLimit([...behind], this.o.fetchConcurrency, (name) => this.readServiceChecks(name));
      } catch (err) {
        if (all) this.needSweep = true;
        throw err;
      }
    }
    this.syncedCatalog = catalogIndex;
    if (early && early.mutations === this.mutations && early.checks === (this.checks ?? checks) && early.kv === this.kv) return;
    this.publish(catalog.index, this.checks ?? checks);
  }

  /**
   * Reads the nodes whose registrations changed (every node when `all`) and
   * applies what differs; returns the services with an instance newer than `checksIndex`.
   */
  private async readNodes(all: boolean, checksIndex: bigint): Promise<Set<string>> {
    const nodePath = (node: string): string => `/v1/catalog/node-services/${encodeURIComponent(node)}`;
    // the node listing and the probes of the nodes held go out together (fetchConcurrency in
    // all): a change costs one round trip less before the changed node is read
    let list: Array<{ Node: string; Address: string }> = [];
    const probed = new Map<string, bigint>();
    const probe = async (node: string): Promise<bigint> => {
      this.stats.nodeProbes++;
      return (await this.get<unknown>('node', `${nodePath(node)}?filter=${MATCH_NOTHING}`)).index;
    };
    const tasks: Array<() => Promise<void>> = [async () => { list = (await this.get<Array<{ Node: string; Address: string }> | null>('node', '/v1/catalog/nodes')).body ?? []; }];
    // a probe that fails here (a node just gone) is left to the pass below, which knows the listing
    if (!all) for (const node of this.nodes.keys()) tasks.push(async () => { probed.set(node, await probe(node).catch(() => -1n)); });
    await mapLimit(tasks, this.o.fetchConcurrency, (task) => task());
    const present = new Set(list.map((n) => n.Node));
    const newer = new Set<string>();
    for (const node of [...this.nodes.keys()]) if (!present.has(node)) this.replaceNode(node, undefined, newer, checksIndex);
    await mapLimit(list, this.o.fetchConcurrency, async (n) => {
      const held = this.nodes.get(n.Node);
      if (!all && held) {
        let index = probed.get(n.Node) ?? -1n;
        if (index < 0n) index = await probe(n.Node);
        if (index === held.index) return;
      }
      this.stats.nodeReads++;
      const read = await this.get<ConsulNodeServices | string | null>('node', nodePath(n.Node));
      const services = typeof read.body === 'object' && read.body !== null ? read.body : undefined;
      this.replaceNode(n.Node, services && { index: read.index, address: services.Node?.Address ?? n.Address, services: services.Services ?? [] }, newer, checksIndex);
    });
    return newer;
  }

  /** makes one node's instances what was read (undefined: the node is gone) */
  private replaceNode(node: string, read: { index: bigint; address: string; services: ConsulNodeService[] } | undefined, newer: Set<string>, checksIndex: bigint): void {
    const held = this.nodes.get(node);
    const next = new Map<string, { service: string; sig: string }>();
    for (const s of read?.services ?? []) {
      const inst = toInstance(node, read!.address, s);
      const sig = JSON.stringify(inst);
      next.set(inst.key, { service: inst.service, sig });
      const before = held?.instances.get(inst.key);
      if (before?.sig === sig) continue;
      this.mutations++;
      if (before && before.service !== inst.service) this.dropInstance(before.service, inst.key);
      let rec = this.known.get(inst.service);
      if (!rec) { rec = { instances: new Map() }; this.known.set(inst.service, rec); }
      rec.instances.set(inst.key, inst);
      if (BigInt(inst.modifyIndex) > checksIndex) newer.add(inst.service);
    }
    for (const [key, i] of held?.instances ?? []) if (!next.has(key)) this.dropInstance(i.service, key);
    if (read) this.nodes.set(node, { index: read.index, instances: next });
    else this.nodes.delete(node);
  }

  private dropInstance(service: string, key: string): void {
    const rec = this.known.get(service);
    if (!rec) return;
    this.mutations++;
    rec.instances.delete(key);
    this.overrides.delete(key);
    if (rec.instances.size === 0) this.known.delete(service);
  }

  /**
   * Reads a service new in the listing with /v1/health/service/<name> and adds its instances to
   * their nodes as a node read would (same signature: the node read that follows finds them
   * unchanged), their checks kept until /v1/health/state/any catches up. Returns whether any was added.
   */
  private async readNewService(name: string): Promise<boolean> {
    this.stats.newServiceReads++;
    const { body, index } = await this.get<ConsulHealthEntry[] | string>('service', `/v1/health/service/${encodeURIComponent(name)}`);
    if (!Array.isArray(body)) return false;
    let added = false;
    for (const e of body) {
      const node = e.Node.Node;
      let held = this.nodes.get(node);
      // a node not held yet: index -1 makes the node pass read it in full
      if (!held) { held = { index: -1n, instances: new Map() }; this.nodes.set(node, held); }
      const inst = toInstance(node, e.Node.Address, e.Service);
      if (inst.service !== name || held.instances.has(inst.key)) continue;
      held.instances.set(inst.key, { service: inst.service, sig: JSON.stringify(inst) });
      let rec = this.known.get(name);
      if (!rec) { rec = { instances: new Map() }; this.known.set(name, rec); }
      rec.instances.set(inst.key, inst);
      if (!this.checks || index > this.checks.index) this.overrides.set(inst.key, { index, checks: e.Checks ?? [] });
      this.mutations++;
      added = true;
    }
    return added;
  }

  /** reads one service's checks with /v1/health/service/<name>; kept until /v1/health/state/any catches up */
  private async readServiceChecks(name: string): Promise<void> {
    this.stats.serviceReads++;
    const { body, index } = await this.get<ConsulHealthEntry[] | string>('service', `/v1/health/service/${encodeURIComponent(name)}`);
    if (!Array.isArray(body)) return;
    for (const e of body) {
      const key = instanceKey(e.Node.Node, e.Service.ID);
      if (!this.checks || index > this.checks.index) { this.overrides.set(key, { index, checks: e.Checks ?? [] }); this.mutations++; }
    }
  }

  /**
   * One read of /v1/health/state/any, made after the node reads, holds the checks of every
   * instance those reads saw (Consul writes an instance and its checks in one transaction). Each
   * instance of `services` newer than the checks held keeps its checks from it, as a service read
   * would give them, until the blocking health query catches up (its index reaches the
   * instance's ModifyIndex or this read's). At 20,000 services registered without checks (the
   * checks index then stays below every instance's) this is one request instead of 20,000.
   */
  private async readAllChecks(services: ReadonlySet<string>, checksIndex: bigint): Promise<void> {
    this.stats.bulkCheckReads++;
    const { body, index } = await this.get<ConsulCheck[] | string | null>('health', '/v1/health/state/any');
    const fresh = indexChecks(Array.isArray(body) ? body : [], index);
    const held = this.checks?.index ?? -1n;
    for (const name of services) {
      for (const inst of this.known.get(name)?.instances.values() ?? []) {
        const modified = BigInt(inst.modifyIndex);
        if (modified <= checksIndex) continue;
        const ovIndex = index > modified ? index : modified;
        if (ovIndex <= held || (this.overrides.get(inst.key)?.index ?? -1n) >= ovIndex) continue;
        this.overrides.set(inst.key, { index: ovIndex, checks: [...(fresh.byInstance.get(inst.key) ?? []), ...(fresh.byNode.get(inst.node) ?? [])] });
        this.mutations++;
      }
    }
  }

  private publish(catalogIndex: string, checks: CheckState): void {
    const services = new Map<string, CatalogInstance[]>();
    for (const name of [...this.known.keys()].sort()) {
      const rec = this.known.get(name)!;
      const list: CatalogInstance[] = [];
      for (const inst of rec.instances.values()) {
        const found = this.overrides.get(inst.key);
        const ov = found && found.index > checks.index ? found : undefined;
        const own = ov ? ov.checks.filter((c) => c.ServiceID === inst.id) : (checks.byInstance.get(inst.key) ?? []);
        const nodeChecks = ov ? ov.checks.filter((c) => c.ServiceID === '') : (checks.byNode.get(inst.node) ?? []);
        list.push({ ...inst, status: worstStatus([...own, ...nodeChecks].map((c) => c.Status)) });
      }
      list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      services.set(name, list);
    }
    this.version++;
    this.stats.syncs++;
    this.current = {
      services,
      kv: this.kv?.entries ?? new Map(),
      indexes: { catalog: catalogIndex, health: checks.index.toString(), kv: this.kv?.index ?? null },
      version: this.version,
    };
    this.readyResolve();
    for (const fn of this.listeners) {
      try { fn(this.current); } catch (err) { this.o.log.error({ err: errorMessage(err) }, 'watcher listener failed'); }
    }
  }
}

function toInstance(node: string, nodeAddress: string, s: ConsulNodeService): Omit<CatalogInstance, 'status'> {
  return {
    key: instanceKey(node, s.ID),
    node,
    nodeAddress: nodeAddress ?? '',
    id: s.ID,
    service: s.Service,
    address: s.Address || nodeAddress || '',
    port: typeof s.Port === 'number' ? s.Port : 0,
    tags: s.Tags ?? [],
    meta: s.Meta ?? {},
    createIndex: s.CreateIndex ?? 0,
    modifyIndex: s.ModifyIndex ?? 0,
  };
}

function indexChecks(list: ConsulCheck[], index: bigint): CheckState {
  const byInstance = new Map<string, ConsulCheck[]>();
  const byNode = new Map<string, ConsulCheck[]>();
  for (const c of list) {
    if (c.ServiceID === '') {
      const l = byNode.get(c.Node);
      if (l) l.push(c); else byNode.set(c.Node, [c]);
      continue;
    }
    const k = instanceKey(c.Node, c.ServiceID);
    const l = byInstance.get(k);
    if (l) l.push(c); else byInstance.set(k, [c]);
  }
  return { index, byInstance, byNode };
}
