// One keep-alive connection pool per upstream (proto://address:port, and apart
// from it the same upstream reached without TLS verification), with two
// kinds of connections: plain sockets for the fast path (fast/upstream.ts) and
// an undici Pool for requests Node's HTTP server parsed (see forward.ts for why
// undici), made when first needed. A pool whose upstream left every route
// drains: its in-flight requests finish, then its connections are closed.
import { Pool as UndiciPool } from 'undici';
import { RawPool } from './fast/upstream.ts';

export interface UpstreamAddress {
  /** proto://address:port (an IPv6 address in brackets): the pool's origin */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly proto: 'http' | 'https';
  readonly tlsSkipVerify: boolean;
}

export interface PoolOptions {
  /** connections per upstream (in use + idle) */
  maxSockets: number;
  /** an idle pooled connection is closed after this long (or sooner when the upstream's Keep-Alive says so) */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

export class Pool {
  private undici: UndiciPool | undefined;
  readonly raw: RawPool;
  inflight = 0;
  draining = false;
  readonly upstream: UpstreamAddress;
  private readonly o: PoolOptions;
  constructor(upstream: UpstreamAddress, o: PoolOptions) {
    this.upstream = upstream;
    this.o = o;
    this.raw = new RawPool(upstream, { maxSockets: o.maxSockets, idleTimeoutMs: o.idleTimeoutMs });
  }
  get dispatcher(): UndiciPool {
    // errors reach each request's handler; the pool's own 'connectionError' events need no listener
    return this.undici ??= new UndiciPool(this.upstream.key, {
      connections: this.o.maxSockets, pipelining: 1,
      keepAliveTimeout: this.o.idleTimeoutMs, keepAliveMaxTimeout: this.o.idleTimeoutMs,
      connect: { timeout: this.o.connectTimeoutMs, ...(this.upstream.proto === 'https' ? { rejectUnauthorized: !this.upstream.tlsSkipVerify } : {}) },
    });
  }
  release(): void {
    this.inflight--;
    if (this.draining && this.inflight === 0) this.close();
  }
  /** closes idle connections now, busy ones once their exchange ends */
  close(): void {
    this.raw.close();
    if (this.undici) void this.undici.close().catch(() => undefined);
  }
  destroy(): void {
    this.raw.destroy();
    if (this.undici) void this.undici.destroy().catch(() => undefined);
  }
}

export class Pools {
  private readonly pools = new Map<string, Pool>();
  /** the same upstreams reached without TLS verification (tlsskipverify=true) */
  private readonly unverified = new Map<string, Pool>();
  private readonly o: PoolOptions;
  constructor(o: PoolOptions) { this.o = o; }

  get(u: UpstreamAddress): Pool {
    // a route that skips verification never shares its connections with one that verifies
    const pools = u.tlsSkipVerify ? this.unverified : this.pools;
    let p = pools.get(u.key);
    if (!p || p.draining) {
      p = new Pool(u, this.o);
      pools.set(u.key, p);
    }
    return p;
  }

  /** keeps the pools of upstreams `has` accepts; the others drain (close once idle) */
  retain(has: (key: string) => boolean): number {
    let drained = 0;
    for (const pools of [this.pools, this.unverified]) {
      for (const [k, p] of pools) {
        if (has(k)) continue;
        pools.delete(k);
        p.draining = true;
        drained++;
        if (p.inflight === 0) p.close();
      }
    }
    return drained;
  }

  get size(): number { return this.pools.size + this.unverified.size; }

  closeAll(): void {
    for (const p of [...this.pools.values(), ...this.unverified.values()]) p.destroy();
    this.pools.clear();
    this.unverified.clear();
  }
}
