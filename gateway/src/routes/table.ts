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

class PathIndex {
  private readonly byPrefix = new Map<string, Route>();
  private lengths: number[] = [];
  add(r: Route): void {
    this.byPrefix.set(r.path, r);
  }
  seal(): void {
    this.lengths = [...new Set([...this.byPrefix.keys()].map((p) => p.length))].sort((a, b) => b - a);
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

export class RouteTable {
  private readonly hosts = new Map<string, PathIndex>();
  private readonly anyHost = new PathIndex();
  readonly routes: Route[] = [];
  /** proto://address:port of every upstream (routes and mirrors) */
  readonly upstreamKeys = new Set<string>();
  readonly version: number;
  readonly builtAt: number;
  constructor(version: number, builtAt: number) { this.version = version; this.builtAt = builtAt; }

  add(r: Route): void {
    this.routes.push(r);
    if (r.host === '') { this.anyHost.add(r); return; }
    let idx = this.hosts.get(r.host);
    if (!idx) { idx = new PathIndex(); this.hosts.set(r.host, idx); }
    idx.add(r);
  }

  seal(): void {
    this.anyHost.seal();
    for (const idx of this.hosts.values()) idx.seal();
  }

  /** host: lower case without port; path: the request path without the query */
  lookup(host: string, path: string): Route | undefined {
    const idx = this.hosts.get(host);
    if (idx) {
      const r = idx.match(path);
      if (r) return r;
    }
    return this.anyHost.match(path);
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

interface PendingTarget { service: string; spec: RouteSpec; instances: Upstream[] }

/** Builds a table from a snapshot; pure apart from the outlier states it attaches. */
export function buildTable(snap: CatalogSnapshot, policies: PolicySet, outliers: OutlierDetector, o: BuildOptions): BuildResult {
  const errors = [...policies.errors];
  const table = new RouteTable(snap.version, Date.now());
  const byRoute = new Map<string, Map<string, PendingTarget>>();
  const healthyByService = new Map<string, Upstream[]>();
  const upstreamOf = (service: string, i: { id: string; node: string; address: string; port: number; tags: readonly string[]; meta: Readonly<Record<string, string>>; status: HealthStatus }, proto: Proto, skip: boolean): Upstream => {
    const key = `${proto}://${i.address.includes(':') ? `[${i.address}]` : i.address}:${i.port}`;
    return { key, address: i.address, port: i.port, proto, tlsSkipVerify: skip, service, id: i.id, node: i.node, tags: i.tags, meta: i.meta, status: i.status, health: outliers.state(key) };
  };
  for (const [service, instances] of snap.services) {
    const specCache = new Map<string, ReturnType<typeof routeSpecs>>();
    const healthy: Upstream[] = [];
    for (const inst of instances) {
      const serves = inst.status === 'passing' || (o.includeWarning && inst.status === 'warning');
      if (serves && inst.port > 0 && inst.address) healthy.push(upstreamOf(service, inst, 'http', false));
      const cacheKey = inst.tags.join('\n') + (inst.meta[o.hostTag.replace(/\./g, '-')] ?? '');
      let parsed = specCache.get(cacheKey);
      if (!parsed) {
        parsed = routeSpecs(service, inst.tags, inst.meta, o);
        specCache.set(cacheKey, parsed);
        for (const e of parsed.errors) errors.push(e);
      }
      for (const spec of parsed.specs) {
        const rk = `${spec.host}\u0000${spec.path}`;
        let targets = byRoute.get(rk);
        if (!targets) { targets = new Map(); byRoute.set(rk, targets); }
        let t = targets.get(service);
        if (!t) { t = { service, spec, instances: [] }; targets.set(service, t); }
        if (serves && inst.port > 0 && inst.address) t.instances.push(spec.proto === 'http' && !spec.tlsSkipVerify ? healthy[healthy.length - 1]! : upstreamOf(service, inst, spec.proto, spec.tlsSkipVerify));
      }
    }
    healthyByService.set(service, healthy);
  }
  for (const [rk, targets] of byRoute) {
    const sep = rk.indexOf('\u0000');
    const host = rk.slice(0, sep);
    const path = rk.slice(sep + 1);
    const list = [...targets.values()];
    // fabio's rule: explicit weights take their share, the others split what is left equally
    const explicit = list.reduce((a, t) => a + (t.spec.weight ?? 0), 0);
    const implicit = list.filter((t) => t.spec.weight === undefined).length;
    const rest = Math.max(0, 1 - explicit);
    const shares = list.map((t) => t.spec.weight ?? (implicit ? rest / implicit : 0));
    const sum = shares.reduce((a, b) => a + b, 0) || 1;
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
    const cum = built.map((t) => (acc += t.share));
    cum[cum.length - 1] = 1;
    table.add({ id: `${host || '*'}${path}`, host, path, targets: built, cum });
  }
  table.seal();
  return { table, errors };
}
