// One keep-alive connection pool per upstream (proto://address:port): an undici
// Pool (see forward.ts for why undici). A pool whose upstream left every route
// drains: its in-flight requests finish, then its connections are closed.
import { Pool as UndiciPool } from 'undici';

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
  readonly dispatcher: UndiciPool;
  inflight = 0;
  draining = false;
  readonly upstream: UpstreamAddress;
  constructor(upstream: UpstreamAddress, o: PoolOptions) {
    this.upstream = upstream;
    this.dispatcher = new UndiciPool(upstream.key, {
      connections: o.maxSockets, pipelining: 1,
      keepAliveTimeout: o.idleTimeoutMs, keepAliveMaxTimeout: o.idleTimeoutMs,
      connect: { timeout: o.connectTimeoutMs, ...(upstream.proto === 'https' ? { rejectUnauthorized: !upstream.tlsSkipVerify } : {}) },
    });
    // errors reach each request's handler; the pool's own 'connectionError' events need no listener
  }
  release(): void {
    this.inflight--;
    if (this.draining && this.inflight === 0) void this.dispatcher.close().catch(() => undefined);
  }
  destroy(): void { void this.dispatcher.destroy().catch(() => undefined); }
}

export class Pools {
  private readonly pools = new Map<string, Pool>();
  private readonly o: PoolOptions;
  constructor(o: PoolOptions) { this.o = o; }

  get(u: UpstreamAddress): Pool {
    let p = this.pools.get(u.key);
    if (!p || p.draining) {
      p = new Pool(u, this.o);
      this.pools.set(u.key, p);
    }
    return p;
  }

  /** keeps the pools of upstreams `has` accepts; the others drain (close once idle) */
  retain(has: (key: string) => boolean): number {
    let drained = 0;
    for (const [k, p] of this.pools) {
      if (has(k)) continue;
      this.pools.delete(k);
      p.draining = true;
      drained++;
      if (p.inflight === 0) void p.dispatcher.close().catch(() => undefined);
    }
    return drained;
  }

  get size(): number { return this.pools.size; }

  closeAll(): void {
    for (const p of this.pools.values()) p.destroy();
    this.pools.clear();
  }
}
