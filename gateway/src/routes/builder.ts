// Builds route tables from catalog snapshots, incrementally: it keeps, per
// service, the instances it last saw and what they made (upstreams, route
// contributions), and per route the services on it. A new snapshot is compared
// service by service (instances by key, address, port, health, tags, meta;
// policies by their KV text); only the routes of services that changed (and of
// services mirroring them) are rebuilt, and the new table shares every other
// host entry with the previous one. A 50,000-route table thus takes a change in
// the time of a pass over the snapshot, not of a rebuild (fabio #865).
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
import { routeSpecs, type Proto, type RouteSpec, type TagOptions } from './tags.ts';
import { PathIndex, RouteTable, type HostEntry, type Route, type Target, type Upstream } from './table.ts';
import { CowMap } from './cow-map.ts';
import { entriesByService, parseServiceEntry, type PolicySet, type ServiceEntry, type ServicePolicy } from '../policy/config.ts';
import { compileSelector } from '../policy/select.ts';
import type { OutlierDetector } from '../policy/outlier.ts';

export interface BuildOptions extends TagOptions {
  /** warning instances receive traffic too */
  includeWarning: boolean;
}

export interface BuildResult {
  table: RouteTable;
  /** refused tags, bad policies: one line each (the whole current list, not only new ones) */
  errors: string[];
  /** services whose instances or policy changed, routes rebuilt */
  changed: { services: number; routes: number };
}

/** what one service puts on one route (rk: host + path, the route's key) */
interface Contribution { rk: string; service: string; spec: RouteSpec; instances: Upstream[] }

/** a contribution without instances yet (never written: replaced by a new array on the first) */
const NO_UPSTREAMS = Object.freeze([]) as unknown as Upstream[];

interface ServiceState {
  instances: readonly CatalogInstance[];
  /** healthy instances as plain http upstreams (what a mirror sends to) */
  healthy: Upstream[];
  /** this service's part of each route it is on (one per route key) */
  contribs: Contribution[];
  /** upstream keys this service holds (each counted once) */
  upstreamKeys: string[];
  errors: string[];
}

const ONE: readonly number[] = Object.freeze([1]);
const NO_ERRORS: string[] = [];

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameMeta(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

/** the same instances as far as routing goes (the watcher makes new objects on every snapshot) */
function sameInstances(a: readonly CatalogInstance[], b: readonly CatalogInstance[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.key !== y.key || x.status !== y.status || x.address !== y.address || x.port !== y.port || !sameStrings(x.tags, y.tags) || !sameMeta(x.meta, y.meta)) return false;
  }
  return true;
}

const sameEntry = (a: ServiceEntry | undefined, b: ServiceEntry | undefined): boolean => a?.policy === b?.policy && a?.active === b?.active;

export class TableBuilder {
  private readonly services = new Map<string, ServiceState>();
  /** route key → the services on it */
  /** (most routes have one service: held without an array) */
  private readonly routeContribs = new Map<string, Contribution | Contribution[]>();
  private kvEntries = new Map<string, ServiceEntry>();
  private readonly policies = new Map<string, ServicePolicy>();
  private readonly policyErrors = new Map<string, string[]>();
  /** mirror service → services whose policy mirrors to it */
  private mirroredBy = new Map<string, Set<string>>();
  /** upstream key → services holding it */
  private readonly upstreamRefs = new Map<string, number>();
  /** services with tag errors */
  private readonly withErrors = new Set<string>();
  private table: RouteTable | undefined;
  private hosts = new CowMap<HostEntry>();
  private size = 0;
  private readonly hostMetaKey: string;
  private lastAlone: readonly Target[] | undefined;

  private readonly outliers: OutlierDetector;
  private readonly o: BuildOptions;
  constructor(outliers: OutlierDetector, o: BuildOptions) {
    this.outliers = outliers;
    this.o = o;
    this.hostMetaKey = o.hostTag.replace(/\./g, '-');
  }

  /**
   * The table for this snapshot. Policies come from the snapshot's KV (compared
   * with the previous snapshot's), or, when given, from an already parsed set.
   */
  build(snap: CatalogSnapshot, parsed?: PolicySet): BuildResult {
    // services mirrored by others whose instances changed
    const mirrorsChanged = new Set<string>();
    const policyChanged = new Set<string>();
    // policies: by KV text, or all of a given set
    if (parsed) {
      for (const s of new Set([...this.policies.keys(), ...parsed.byService.keys()])) policyChanged.add(s);
      this.policies.clear();
      for (const [s, p] of parsed.byService) this.policies.set(s, p);
      this.policyErrors.clear();
      if (parsed.errors.length) this.policyErrors.set('', parsed.errors);
    } else {
      const next = entriesByService(snap.kv);
      for (const s of new Set([...this.kvEntries.keys(), ...next.keys()])) {
        const e = next.get(s);
        if (sameEntry(this.kvEntries.get(s), e)) continue;
        policyChanged.add(s);
        const r = e ? parseServiceEntry(s, e) : { policy: undefined, errors: NO_ERRORS };
        if (r.policy) this.policies.set(s, r.policy);
        else this.policies.delete(s);
        if (r.errors.length) this.policyErrors.set(s, r.errors);
        else this.policyErrors.delete(s);
      }
      this.kvEntries = next;
    }
    if (policyChanged.size) {
      this.mirroredBy = new Map();
      for (const [s, p] of this.policies) {
        if (!p.mirror) continue;
        let set = this.mirroredBy.get(p.mirror.service);
        if (!set) this.mirroredBy.set(p.mirror.service, set = new Set());
        set.add(s);
      }
    }
    // instances
    const decremented: string[] = [];
    // the first table: every route is new, no need to list them
    const first = this.table === undefined;
    const dirty: Set<string> | undefined = first ? undefined : new Set<string>();
    let changedCount = 0;
    for (const [name, instances] of snap.services) {
      const had = this.services.get(name);
      if (had && sameInstances(had.instances, instances)) continue;
      changedCount++;
      if (this.mirroredBy.has(name)) mirrorsChanged.add(name);
      this.replaceService(name, had, instances, dirty, decremented);
    }
    if (this.services.size > snap.services.size) { // some services are gone
      for (const [name, had] of this.services) {
        if (snap.services.has(name)) continue;
        changedCount++;
        if (this.mirroredBy.has(name)) mirrorsChanged.add(name);
        this.replaceService(name, had, undefined, dirty, decremented);
      }
    }
    let rebuilt: number;
    if (dirty) {
      // routes of services whose policy changed, or whose mirror's instances changed
      const retarget = new Set(policyChanged);
      for (const s of mirrorsChanged) for (const m of this.mirroredBy.get(s) ?? []) retarget.add(m);
      for (const s of retarget) for (const c of this.services.get(s)?.contribs ?? []) dirty.add(c.rk);
      if (dirty.size) {
        // copy-on-write: the previous table keeps its own maps
        const hosts = new CowMap(this.hosts);
        const cloned = new Set<PathIndex>();
        for (const rk of dirty) this.applyRoute(hosts, cloned, rk, this.routeContribs.get(rk));
        this.hosts = hosts;
      }
      rebuilt = dirty.size;
    } else {
      const cloned = new Set<PathIndex>();
      for (const [rk, list] of this.routeContribs) this.applyRoute(this.hosts, cloned, rk, list);
      rebuilt = this.routeContribs.size;
    }
    const removed: string[] = [];
    for (const k of decremented) if (!this.upstreamRefs.has(k)) removed.push(k);
    const table = new RouteTable({ version: snap.version, builtAt: Date.now(), hosts: this.hosts, size: this.size, upstreams: this.upstreamRefs, removedUpstreams: removed });
    this.table = table;
    return { table, errors: this.errors(), changed: { services: changedCount + policyChanged.size, routes: rebuilt } };
  }

  /** an upstream of a service's instance, its outlier state kept across tables (by key) */
  private upstream(service: string, i: CatalogInstance, proto: Proto, skip: boolean): Upstream {
    const key = `${proto}://${i.address.includes(':') ? `[${i.address}]` : i.address}:${i.port}`;
    return { key, address: i.address, port: i.port, proto, tlsSkipVerify: skip, service, id: i.id, node: i.node, tags: i.tags, meta: i.meta, status: i.status, health: this.outliers.state(key) };
  }

  /** replaces what a service makes (undefined: it is gone); marks the routes it was or is on */
  private replaceService(name: string, had: ServiceState | undefined, instances: readonly CatalogInstance[] | undefined, dirty: Set<string> | undefined, decremented: string[]): void {
    if (had) {
      for (const c of had.contribs) {
        dirty?.add(c.rk);
        const list = this.routeContribs.get(c.rk);
        if (list === undefined) continue;
        const rest = Array.isArray(list) ? list.filter((x) => x !== c) : list === c ? [] : [list];
        if (rest.length === 0) this.routeContribs.delete(c.rk);
        else this.routeContribs.set(c.rk, rest.length === 1 ? rest[0]! : rest);
      }
      for (const k of had.upstreamKeys) {
        const n = this.upstreamRefs.get(k)! - 1;
        if (n > 0) this.upstreamRefs.set(k, n);
        else { this.upstreamRefs.delete(k); decremented.push(k); }
      }
    }
    if (!instances) {
      this.services.delete(name);
      this.withErrors.delete(name);
      return;
    }
    const o = this.o;
    // arrays are made with their first element (exactly sized): most services have one instance,
    // and an array grown from [] by push reserves 17 slots
    let healthy: Upstream[] | undefined;
    let keys: string[] | undefined;
    let contribs: Contribution[] | undefined;
    let errors = NO_ERRORS;
    const specCache = instances.length > 1 ? new Map<string, ReturnType<typeof routeSpecs>>() : undefined;
    for (const inst of instances) {
      const serves = (inst.status === 'passing' || (o.includeWarning && inst.status === 'warning')) && inst.port > 0 && inst.address !== '';
      let plain: Upstream | undefined;
      if (serves) {
        plain = this.upstream(name, inst, 'http', false);
        if (healthy) healthy.push(plain); else healthy = [plain];
        if (!keys) keys = [plain.key];
        else if (!keys.includes(plain.key)) keys.push(plain.key);
      }
      const cacheKey = specCache && inst.tags.join('\n') + (inst.meta[this.hostMetaKey] ?? '');
      let parsed = cacheKey === undefined ? undefined : specCache!.get(cacheKey);
      if (!parsed) {
        parsed = routeSpecs(name, inst.tags, inst.meta, o);
        if (cacheKey !== undefined) specCache!.set(cacheKey, parsed);
        if (parsed.errors.length) errors = errors === NO_ERRORS ? [...parsed.errors] : [...errors, ...parsed.errors];
      }
      for (const spec of parsed.specs) {
        let c = contribs?.find((x) => x.rk === spec.key);
        if (!c) {
          c = { rk: spec.key, service: name, spec, instances: NO_UPSTREAMS };
          if (contribs) contribs.push(c); else contribs = [c];
        }
        if (!plain) continue;
        const u = spec.proto === 'http' && !spec.tlsSkipVerify ? plain : this.upstream(name, inst, spec.proto, spec.tlsSkipVerify);
        if (u !== plain && !keys!.includes(u.key)) keys!.push(u.key);
        // one instance: its routes share the service's healthy list (the same one upstream), and so a selector
        if (c.instances === NO_UPSTREAMS) c.instances = u === plain && instances.length === 1 ? healthy! : [u];
        else c.instances.push(u);
      }
    }
    const state: ServiceState = { instances, healthy: healthy ?? [], contribs: contribs ?? [], upstreamKeys: keys ?? [], errors };
    for (const c of state.contribs) {
      dirty?.add(c.rk);
      const list = this.routeContribs.get(c.rk);
      if (list === undefined) this.routeContribs.set(c.rk, c);
      else if (Array.isArray(list)) list.push(c);
      else this.routeContribs.set(c.rk, [list, c]);
    }
    for (const k of state.upstreamKeys) this.upstreamRefs.set(k, (this.upstreamRefs.get(k) ?? 0) + 1);
    this.services.set(name, state);
    if (state.errors.length) this.withErrors.add(name);
    else this.withErrors.delete(name);
  }

  /** rebuilds one route (or removes it) in hosts, cloning a shared path index once */
  private applyRoute(hosts: CowMap<HostEntry>, cloned: Set<PathIndex>, rk: string, list: Contribution | Contribution[] | undefined): void {
    const one = Array.isArray(list) ? list[0] : list;
    const slash = one ? -1 : rk.indexOf('/');
    const host = one ? one.spec.host : rk.slice(0, slash);
    const path = one ? one.spec.path : rk.slice(slash);
    const route = list ? this.route(rk, host, path, list) : undefined;
    const had = hosts.get(host);
    if (had === undefined) {
      if (route) { hosts.set(host, route); this.size++; }
      return;
    }
    if (!(had instanceof PathIndex)) {
      if (had.path === path) {
        if (route) hosts.set(host, route);
        else { hosts.delete(host); this.size--; }
        return;
      }
      if (!route) return;
      const idx = new PathIndex();
      idx.set(had);
      idx.set(route);
      cloned.add(idx);
      hosts.set(host, idx);
      this.size++;
      return;
    }
    let idx = had;
    if (!cloned.has(idx)) { idx = new PathIndex(had); cloned.add(idx); hosts.set(host, idx); }
    const before = idx.size;
    if (route) idx.set(route); else idx.delete(path);
    this.size += idx.size - before;
    if (idx.size === 0) hosts.delete(host);
    else if (idx.size === 1) hosts.set(host, idx.only()!);
  }

  private route(rk: string, host: string, path: string, contribs: Contribution | Contribution[]): Route {
    // the id is the route key when the route has a host (no second copy of the string)
    const id = host ? rk : `*${path}`;
    if (!Array.isArray(contribs) || contribs.length === 1) return { id, host, path, targets: this.alone(Array.isArray(contribs) ? contribs[0]! : contribs), cum: ONE };
    const list = contribs.length > 1 ? [...contribs].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0)) : contribs;
    // fabio's rule: explicit weights take their share, the others split what is left equally
    let shares: readonly number[] = ONE;
    let sum = 1;
    if (list.length > 1) {
      const explicit = list.reduce((a, t) => a + (t.spec.weight ?? 0), 0);
      const implicit = list.filter((t) => t.spec.weight === undefined).length;
      const rest = Math.max(0, 1 - explicit);
      shares = list.map((t) => t.spec.weight ?? (implicit ? rest / implicit : 0));
      sum = shares.reduce((a, b) => a + b, 0) || 1;
    }
    const targets: Target[] = list.map((t, i) => this.target(t, shares[i]! / sum, this.policies.get(t.service)));
    let acc = 0;
    const cum = targets.map((t) => (acc += t.share));
    cum[cum.length - 1] = 1;
    return { id, host, path, targets, cum };
  }

  private target(t: Contribution, share: number, policy: ServicePolicy | undefined): Target {
    const mirrorRule = policy?.mirror;
    return {
      service: t.service,
      share,
      strip: t.spec.strip,
      instances: t.instances,
      selector: compileSelector(t.instances, policy),
      policy,
      mirror: mirrorRule ? { service: mirrorRule.service, percent: mirrorRule.percent, instances: this.services.get(mirrorRule.service)?.healthy ?? [], cursor: 0 } : undefined,
    };
  }

  /**
   * The targets of a route with one service. Without a policy they depend only on the service,
   * its instances and the strip prefix: the routes of a one-instance service (which share one
   * instance list) share them, and so one selector and round-robin cursor. A service's routes are
   * rebuilt one after the other, so the last is kept.
   */
  private alone(t: Contribution): readonly Target[] {
    const policy = this.policies.get(t.service);
    if (policy) return [this.target(t, 1, policy)];
    const last = this.lastAlone?.[0];
    if (last?.instances === t.instances && last.service === t.service && last.strip === t.spec.strip) return this.lastAlone!;
    return (this.lastAlone = [this.target(t, 1, undefined)]);
  }

  private errors(): string[] {
    const out: string[] = [];
    for (const e of this.policyErrors.values()) out.push(...e);
    for (const s of this.withErrors) out.push(...this.services.get(s)!.errors);
    return out;
  }
}

/** A table from one snapshot and parsed policies, with a builder of its own (no previous table). */
export function buildTable(snap: CatalogSnapshot, policies: PolicySet, outliers: OutlierDetector, o: BuildOptions): BuildResult {
  return new TableBuilder(outliers, o).build(snap, policies);
}
