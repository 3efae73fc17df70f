// The route table: what a request is looked up in. Built by the TableBuilder
// (builder.ts) and swapped in whole (one reference assignment: a request sees the
// old table or the new one, never a mix). A new table shares every unchanged
// host entry with the previous one (copy-on-write), so a change costs what it
// touches, not the size of the table. Lookup: routes of the request's host
// first, then host-less ones (`urlprefix-/path`); within each, the longest path
// prefix wins.
import type { HealthStatus } from '@gantry/core';
import { CowMap } from './cow-map.ts';
import type { UpstreamAddress } from '../proxy/pools.ts';
import type { ServicePolicy } from '../policy/config.ts';
import type { Selector } from '../policy/select.ts';
import type { UpstreamHealth } from '../policy/outlier.ts';

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

/**
 * The routes of one host (or of any host) by path prefix; most hosts have one
 * route, '/', held directly instead. A new version copies only what it changes.
 */
export class PathIndex {
  private readonly byPrefix: CowMap<Route>;
  /** how many prefixes have each length */
  private readonly lengthCount: Map<number, number>;
  /** distinct prefix lengths, longest first */
  private lengths: number[];
  constructor(from?: PathIndex) {
    this.byPrefix = new CowMap(from?.byPrefix);
    this.lengthCount = new Map(from?.lengthCount);
    this.lengths = from ? from.lengths : [];
  }
  get size(): number { return this.byPrefix.size; }
  routes(): IterableIterator<Route> { return this.byPrefix.values(); }
  set(r: Route): void {
    if (!this.byPrefix.set(r.path, r)) return;
    const n = this.lengthCount.get(r.path.length) ?? 0;
    this.lengthCount.set(r.path.length, n + 1);
    if (n === 0) this.lengths = [...this.lengthCount.keys()].sort((a, b) => b - a);
  }
  delete(path: string): void {
    if (!this.byPrefix.delete(path)) return;
    const n = this.lengthCount.get(path.length)! - 1;
    if (n > 0) { this.lengthCount.set(path.length, n); return; }
    this.lengthCount.delete(path.length);
    this.lengths = [...this.lengthCount.keys()].sort((a, b) => b - a);
  }
  /** the one route left, when only one is */
  only(): Route | undefined { return this.byPrefix.only(); }
  match(path: string): Route | undefined {
    for (const len of this.lengths) {
      if (len > path.length) continue;
      const r = this.byPrefix.get(len === path.length ? path : path.slice(0, len));
      if (r) return r;
    }
    return undefined;
  }
}

export interface UpstreamSet { has(key: string): boolean; readonly size: number }

/** a host with one route holds it directly; with more, an index */
export type HostEntry = Route | PathIndex;

function matchOne(entry: HostEntry, path: string): Route | undefined {
  if (entry instanceof PathIndex) return entry.match(path);
  return path.startsWith(entry.path) ? entry : undefined;
}

export class RouteTable {
  readonly version: number;
  readonly builtAt: number;
  /** routes in the table */
  readonly size: number;
  /** upstreams (proto://address:port) the previous table held and this one does not */
  readonly removedUpstreams: readonly string[];
  private readonly hosts: CowMap<HostEntry>;
  /** the builder's live upstream set: true to the newest table it built (a table is swapped in as soon as it is built) */
  private readonly upstreams: UpstreamSet;
  constructor(o: { version: number; builtAt: number; hosts: CowMap<HostEntry>; size: number; upstreams: UpstreamSet; removedUpstreams: readonly string[] }) {
    this.version = o.version;
    this.builtAt = o.builtAt;
    this.hosts = o.hosts;
    this.size = o.size;
    this.upstreams = o.upstreams;
    this.removedUpstreams = o.removedUpstreams;
  }

  /** does a route (or a mirror) of this table send to this upstream */
  hasUpstream(key: string): boolean { return this.upstreams.has(key); }
  get upstreamCount(): number { return this.upstreams.size; }

  /** every route (host order, then path order of insertion): for /routes and tests, not the request path */
  get routes(): Route[] {
    const out: Route[] = [];
    for (const e of this.hosts.values()) {
      if (e instanceof PathIndex) for (const r of e.routes()) out.push(r);
      else out.push(e);
    }
    return out;
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
