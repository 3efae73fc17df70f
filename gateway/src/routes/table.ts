// The route table: built from one catalog snapshot and the KV policies, then
// swapped in whole (one reference assignment: a request sees the old table or
// the new one, never a mix). Lookup: routes of the request's host first, then
// host-less ones (`urlprefix-/path`); within each, the longest path prefix wins.
import type { HealthStatus } from '@gantry/core';
import type { CatalogSnapshot } from './snapshot.ts';
import { routeSpecs, type Proto, type RouteSpec, type TagOptions } from './tags.ts';
import type { UpstreamAddress } from '../proxy/pools.ts';
import type { PolicySet, ServicePolicy } from '../policy/config.ts';
import { compileSelector, type Selector } from '../policy/select.ts';
import type { OutlierDetector, UpstreamHealth } from '../policy/outlier.ts';

export interface Upstream extends UpstreamAddress {
  readonly service: string;
  readonly id: string;
  readonly node: string;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly status: HealthStatus;
  readonly health: UpstreamHealth;
}

export interface Target {
  readonly service: string;
  /** this target's share of the route's traffic (0..1) */
  readonly share: number;
  readonly strip: string | undefined;
  readonly instances: readonly Upstream[];
  readonly selector: Selector<Upstream>;
  readonly policy: ServicePolicy | undefined;
  /** healthy instances of the mirror service, when the policy mirrors */
  readonly mirror: { service: string; percent: number; instances: readonly Upstream[]; cursor: number } | undefined;
}

export interface Route {
  /** host (or *) + path: the metrics label and /routes key */
  readonly id: string;
  readonly host: string;
  readonly path: string;
  readonly targets: readonly Target[];
  /** cumulative shares of targets */
  readonly cum: readonly number[];
}

/** the routes of one host (or of any host) by path prefix; most hosts have one route, '/' */
class PathIndex {
  private readonly byPrefix = new Map<string, Route>();
  private lengths: readonly number[] = [];
  add(r: Route): void {
    this.byPrefix.set(r.path, r);
  }
  seal(): void {
    this.lengths = [...new Set(Array.from(this.byPrefix.keys(), (p) => p.length))].sort((a, b) => b - a);
  }
  match(path: string): Route | undefined {
    for (const len of this.lengths) {
      if (len > path.length) continue;
      const r = this.byPrefix.get(len === path.length ? path : path.slice(0, len));
      if (r) return r;
    }
    return undefined;
  }
}

function matchOne(entry: Route | PathIndex, path: string): Route | undefined {
  if (entry instanceof PathIndex) return entry.match(path);
  return path.startsWith(entry.path) ? entry : undefined;
}

export class RouteTable {
  /** a host with one route holds it directly; with more, an index */
  private readonly hosts = new Map<string, Route | PathIndex>();
  readonly routes: Route[] = [];
  /** proto://address:port of every upstream (routes and mirrors) */
  readonly upstreamKeys = new Set<string>();
  readonly version: number;
  readonly builtAt: number;
  constructor(version: number, builtAt: number) { this.version = version; this.builtAt = builtAt; }

  hasUpstream(key: string): boolean { return this.upstreamKeys.has(key); }

  add(r: Route): void {
    this.routes.push(r);
    const had = this.hosts.get(r.host);
    if (had === undefined) { this.hosts.set(r.host, r); return; }
    let idx: PathIndex;
    if (had instanceof PathIndex) idx = had;
    else { idx = new PathIndex(); idx.add(had); this.hosts.set(r.host, idx); }
    idx.add(r);
  }

  seal(): void {
    for (const e of this.hosts.values()) if (e instanceof PathIndex) e.seal();
  }

  /** host: lower case without port; path: the request path without the query */
  lookup(host: string, path: string): Route | undefined {
    const h = this.hosts.get(host);
    if (h !== undefined && host !== '') {
      const r = matchOne(h, path);
      if (r) return r;
    }
    const any = this.hosts.get('');
    return any === undefined ? undefined : matchOne(any, path);
  }

  /** the live table as /routes shows it */
  toJSON(): unknown {
    return {
      version: this.version,
      builtAt: new Date(this.builtAt).toISOString(),
      routes: this.routes.map((r) => ({
        host: r.host || '*', path: r.path,
        targets: r.targets.map((t) => ({
          service: t.service, share: Number(t.share.toFixed(4)), strip: t.strip ?? null,
          instances: t.instances.map((u) => ({ id: u.id, node: u.node, address: `${u.proto}://${u.address}:${u.port}`, status: u.status, ejected: u.health.ejected })),
          policy: t.policy ? {
            split: t.policy.split, match: t.policy.match, active: t.policy.active ?? null, mirror: t.policy.mirror ?? null, rateLimit: t.policy.rateLimit ?? null,
          } : null,
        })),
      })),
    };
  }
}

export interface BuildOptions extends TagOptions {
  /** warning instances receive traffic too */
  includeWarning: boolean;
}

export interface BuildResult {
  table: RouteTable;
  /** refused tags, bad policies: one line each */
  errors: string[];
}

const ONE: readonly number[] = Object.freeze([1]);

interface PendingTarget { service: string; spec: RouteSpec; instances: Upstream[] }

/** Builds a table from a snapshot; pure apart from the outlier states it attaches. */
export function buildTable(snap: CatalogSnapshot, policies: PolicySet, outliers: OutlierDetector, o: BuildOptions): BuildResult {
  const errors = [...policies.errors];
  const table = new RouteTable(snap.version, Date.now());
  // host + path → the services on it (one in the common case)
  const byRoute = new Map<string, PendingTarget | PendingTarget[]>();
  const healthyByService = new Map<string, Upstream[]>();
  const upstreamOf = (service: string, i: { id: string; node: string; address: string; port: number; tags: readonly string[]; meta: Readonly<Record<string, string>>; status: HealthStatus }, proto: Proto, skip: boolean): Upstream => {
    const key = `${proto}://${i.address.includes(':') ? `[${i.address}]` : i.address}:${i.port}`;
    return { key, address: i.address, port: i.port, proto, tlsSkipVerify: skip, service, id: i.id, node: i.node, tags: i.tags, meta: i.meta, status: i.status, health: outliers.state(key) };
  };
  const hostMetaKey = o.hostTag.replace(/\./g, '-');
  for (const [service, instances] of snap.services) {
    const specCache = instances.length > 1 ? new Map<string, ReturnType<typeof routeSpecs>>() : undefined;
    const healthy: Upstream[] = [];
    for (const inst of instances) {
      const serves = inst.status === 'passing' || (o.includeWarning && inst.status === 'warning');
      if (serves && inst.port > 0 && inst.address) healthy.push(upstreamOf(service, inst, 'http', false));
      const cacheKey = specCache && inst.tags.join('\n') + (inst.meta[hostMetaKey] ?? '');
      let parsed = cacheKey === undefined ? undefined : specCache!.get(cacheKey);
      if (!parsed) {
        parsed = routeSpecs(service, inst.tags, inst.meta, o);
        if (cacheKey !== undefined) specCache!.set(cacheKey, parsed);
        for (const e of parsed.errors) errors.push(e);
      }
      for (const spec of parsed.specs) {
        const rk = spec.host + spec.path; // a host never holds '/'
        const had = byRoute.get(rk);
        let t: PendingTarget | undefined;
        if (had === undefined) { t = { service, spec, instances: [] }; byRoute.set(rk, t); }
        else if (Array.isArray(had)) {
          t = had.find((x) => x.service === service);
          if (!t) { t = { service, spec, instances: [] }; had.push(t); }
        } else if (had.service === service) t = had;
        else { t = { service, spec, instances: [] }; byRoute.set(rk, [had, t]); }
        if (serves && inst.port > 0 && inst.address) t.instances.push(spec.proto === 'http' && !spec.tlsSkipVerify ? healthy[healthy.length - 1]! : upstreamOf(service, inst, spec.proto, spec.tlsSkipVerify));
      }
    }
    healthyByService.set(service, healthy);
  }
  for (const targets of byRoute.values()) {
    const list = Array.isArray(targets) ? targets : [targets];
    const { host, path } = list[0]!.spec;
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
    const built: Target[] = list.map((t, i) => {
      const policy = policies.byService.get(t.service);
      const mirrorRule = policy?.mirror;
      for (const u of t.instances) table.upstreamKeys.add(u.key);
      const mirrorInstances = mirrorRule ? healthyByService.get(mirrorRule.service) ?? [] : [];
      for (const u of mirrorInstances) table.upstreamKeys.add(u.key);
      return {
        service: t.service,
        share: shares[i]! / sum,
        strip: t.spec.strip,
        instances: t.instances,
        selector: compileSelector(t.instances, policy),
        policy,
        mirror: mirrorRule ? { service: mirrorRule.service, percent: mirrorRule.percent, instances: mirrorInstances, cursor: 0 } : undefined,
      };
    });
    let acc = 0;
    const cum = built.length === 1 ? ONE : built.map((t) => (acc += t.share));
    if (cum !== ONE) (cum as number[])[cum.length - 1] = 1;
    table.add({ id: `${host || '*'}${path}`, host, path, targets: built, cum });
  }
  table.seal();
  return { table, errors };
}
