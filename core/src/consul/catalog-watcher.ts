// The Consul watcher. However many services there are, it holds a constant
// number of blocking queries:
//   /v1/catalog/services   — names and tags; its index moves on every registration change
//   /v1/health/state/any   — every check; its index moves on every health change
//   /v1/kv/<prefix>?recurse — only when a KV prefix is watched
// and then fetches only what changed:
//   - a service whose name is new, whose tags changed, or whose checked instances
//     appeared or went away (seen in the checks) is fetched alone with
//     /v1/health/service/<name>;
//   - health changes are applied from /v1/health/state/any itself, with no fetch;
//   - when the catalog answers first, a filtered /v1/health/state/any matching nothing
//     (its index only) says whether the change wrote checks, whose answer is then awaited;
//   - when the catalog index moved and no fetched service accounts for it (an
//     instance without checks, a re-registration with a new port), one sweep reads
//     /v1/catalog/node-services/<node> for each node (a request a node, not a
//     service) and keeps the services whose instances differ. The first sync and a
//     periodic resync (resyncMs) are sweeps too.
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
  /** fetches of changed services in flight at once (default 8) */
  fetchConcurrency?: number;
  /** a full sweep this often to catch what the indexes could not say (default 5m, 0: never) */
  resyncMs?: number;
  /** every request sent to Consul, by endpoint kind */
  onRequest?: (endpoint: string) => void;
  onRequestError?: (endpoint: string) => void;
  random?: () => number;
}

interface ServiceRecord {
  instances: Map<string, Omit<CatalogInstance, 'status'>>;
  /** instance keys that had checks when last fetched */
  checked: Set<string>;
  tagUnion: string[];
}

interface CheckState {
  index: bigint;
  /** checks of instances, by instance key */
  byInstance: Map<string, ConsulCheck[]>;
  /** node-level checks (serfHealth, node maintenance), by node */
  byNode: Map<string, ConsulCheck[]>;
  /** instance keys with checks, by service name */
  keysByName: Map<string, Set<string>>;
}

type Listener = (snap: CatalogSnapshot) => void;

export class CatalogWatcher {
  private readonly o: Required<Omit<CatalogWatcherOptions, 'kvPrefix' | 'onRequest' | 'onRequestError' | 'random'>> & CatalogWatcherOptions;
  private readonly ac = new AbortController();
  private catalog: { index: string; tags: Map<string, string[]> } | undefined;
  private checks: CheckState | undefined;
  /** checks read with a single service fetch, newer than the state/any we hold */
  private overrides = new Map<string, { index: bigint; checks: ConsulCheck[] }>();
  private kv: { index: string; entries: Map<string, string> } | undefined;
  private readonly known = new Map<string, ServiceRecord>();
  private syncedCatalog = -1n;
  private syncing: Promise<void> | undefined;
  private again = false;
  private needSweep = true;
  private version = 0;
  private current: CatalogSnapshot | undefined;
  private readonly listeners = new Set<Listener>();
  private readyResolve!: () => void;
  private readonly readyPromise = new Promise<void>((r) => { this.readyResolve = r; });
  private loops: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private healthGrace: NodeJS.Timeout | undefined;
  private healthGraceOver = false;
  /** the checks index a catalog change is waiting for */
  private waitingForHealth: bigint | undefined;
  /** the last error talking to Consul, cleared by the next success */
  lastError: string | undefined;

  constructor(opts: CatalogWatcherOptions) {
    this.o = { waitMs: 300_000, minSpacingMs: 100, fetchConcurrency: 8, resyncMs: 300_000, ...opts };
  }

  /** resolves once catalog, health (and KV) have been read and merged once */
  ready(): Promise<void> { return this.readyPromise; }

  snapshot(): CatalogSnapshot | undefined { return this.current; }

  onChange(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(signal?: AbortSignal): void {
    signal?.addEventListener('abort', () => this.stop(), { once: true });
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
        const tags = new Map<string, string[]>();
        for (const [name, t] of Object.entries(body ?? {})) tags.set(name, [...new Set(t ?? [])].sort());
        this.catalog = { index, tags };
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
      this.resyncTimer = setInterval(() => { this.needSweep = true; void this.schedule(); }, this.o.resyncMs);
      this.resyncTimer.unref();
    }
  }

  stop(): void {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.healthGrace) clearTimeout(this.healthGrace);
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
    const catalogMoved = catalogIndex !== this.syncedCatalog;
    // the checks we hold are older than the catalog: did this change write checks too? A filtered
    // /v1/health/state/any that matches nothing answers with the checks' index alone (one tiny
    // request a catalog change, not a service): if it moved, the blocking health answer is on its
    // way and carries what the change added; wait for it rather than sweep every node
    if (catalogMoved && !this.needSweep && checks.index < catalogIndex) {
      if (this.waitingForHealth !== undefined && checks.index < this.waitingForHealth && !this.healthGraceOver) return;
      if (this.waitingForHealth === undefined) {
        const probe = await this.get<unknown>('health', `/v1/health/state/any?filter=${encodeURIComponent('CheckID == "__gantry_index_only__"')}`);
        if (probe.index > checks.index) {
          this.waitingForHealth = probe.index;
          // a safety net only: the blocking query answers as soon as its index moves
          this.healthGrace = setTimeout(() => { this.healthGraceOver = true; this.healthGrace = undefined; void this.schedule(); }, 2000);
          return;
        }
      }
    }
    if (this.healthGrace) { clearTimeout(this.healthGrace); this.healthGrace = undefined; }
    this.healthGraceOver = false;
    this.waitingForHealth = undefined;
    let use = checks;
    if (this.needSweep) {
      use = await this.sweep(checks);
      this.needSweep = false;
    } else if (catalogMoved) {
      const dirty = this.dirtyNames(catalog.tags, checks);
      // a name gone from the catalog is fetched too: its answer (empty) carries the index of its removal
      for (const name of this.known.keys()) if (!catalog.tags.has(name)) dirty.add(name);
      let explained = 0n;
      await mapLimit([...dirty], this.o.fetchConcurrency, async (name) => {
        const idx = await this.fetchService(name);
        if (idx > explained) explained = idx;
      });
      // the newest registration change was not one of the services fetched: look at every node once
      if (explained < catalogIndex) use = await this.sweep(checks);
    }
    this.syncedCatalog = catalogIndex;
    this.publish(catalog.index, use);
  }

  /** names whose registrations changed in a way the two indexes' answers show */
  private dirtyNames(tags: Map<string, string[]>, checks: CheckState): Set<string> {
    const dirty = new Set<string>();
    for (const [name, t] of tags) {
      const rec = this.known.get(name);
      if (!rec || rec.tagUnion.join('\u0000') !== t.join('\u0000')) dirty.add(name);
    }
    for (const [name, keys] of checks.keysByName) {
      const rec = this.known.get(name);
      if (!rec) { if (tags.has(name)) dirty.add(name); continue; }
      for (const k of keys) if (!rec.instances.has(k)) { dirty.add(name); break; }
    }
    for (const [name, rec] of this.known) {
      const keys = checks.keysByName.get(name);
      for (const k of rec.checked) if (!keys?.has(k)) { dirty.add(name); break; }
    }
    return dirty;
  }

  /** reads one service with /v1/health/service/<name>; returns its index */
  private async fetchService(name: string): Promise<bigint> {
    const { body, index } = await this.get<ConsulHealthEntry[] | string>('service', `/v1/health/service/${encodeURIComponent(name)}`);
    const entries = Array.isArray(body) ? body : [];
    const rec: ServiceRecord = { instances: new Map(), checked: new Set(), tagUnion: [] };
    const tagSet = new Set<string>();
    for (const e of entries) {
      const inst = toInstance(e.Node.Node, e.Node.Address, e.Service);
      rec.instances.set(inst.key, inst);
      for (const t of inst.tags) tagSet.add(t);
      const own = (e.Checks ?? []).filter((c) => c.ServiceID !== '');
      if (own.length) rec.checked.add(inst.key);
      if (this.checks && index > this.checks.index) this.overrides.set(inst.key, { index, checks: e.Checks ?? [] });
    }
    rec.tagUnion = [...tagSet].sort();
    if (rec.instances.size === 0 && !this.catalog?.tags.has(name)) this.known.delete(name);
    else this.known.set(name, rec);
    return index;
  }

  /** reads every node's services (a request a node) and keeps what differs; returns the checks to use */
  private async sweep(checks: CheckState): Promise<CheckState> {
    const { body: nodes } = await this.get<Array<{ Node: string; Address: string }>>('node', '/v1/catalog/nodes');
    const seen = new Map<string, ServiceRecord>();
    let newer = false;
    await mapLimit(nodes ?? [], 4, async (n) => {
      const { body } = await this.get<ConsulNodeServices | string>('node', `/v1/catalog/node-services/${encodeURIComponent(n.Node)}`);
      if (typeof body !== 'object' || body === null) return; // the node went away meanwhile
      const nodeAddress = body.Node?.Address ?? n.Address;
      for (const s of body.Services ?? []) {
        const inst = toInstance(n.Node, nodeAddress, s);
        let rec = seen.get(inst.service);
        if (!rec) { rec = { instances: new Map(), checked: new Set(), tagUnion: [] }; seen.set(inst.service, rec); }
        rec.instances.set(inst.key, inst);
        if (BigInt(inst.modifyIndex) > checks.index) newer = true;
      }
    });
    // instances registered after the checks we hold: read the checks once more (one request,
    // not one a service), so a check written with its instance is not missed
    let use = checks;
    if (newer) {
      const { body, index } = await this.get<ConsulCheck[]>('health', '/v1/health/state/any');
      if (index >= checks.index) {
        use = indexChecks(body ?? [], index);
        if (!this.checks || index > this.checks.index) this.checks = use;
      }
    }
    for (const [name, rec] of seen) {
      const tags = new Set<string>();
      for (const i of rec.instances.values()) {
        for (const t of i.tags) tags.add(t);
        if (use.byInstance.has(i.key)) rec.checked.add(i.key);
      }
      rec.tagUnion = [...tags].sort();
      this.known.set(name, rec);
    }
    for (const name of [...this.known.keys()]) if (!seen.has(name)) this.known.delete(name);
    return use;
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
  const keysByName = new Map<string, Set<string>>();
  for (const c of list) {
    if (c.ServiceID === '') {
      const l = byNode.get(c.Node);
      if (l) l.push(c); else byNode.set(c.Node, [c]);
      continue;
    }
    const k = instanceKey(c.Node, c.ServiceID);
    const l = byInstance.get(k);
    if (l) l.push(c); else byInstance.set(k, [c]);
    let keys = keysByName.get(c.ServiceName);
    if (!keys) { keys = new Set(); keysByName.set(c.ServiceName, keys); }
    keys.add(k);
  }
  return { index, byInstance, byNode, keysByName };
}
