// One keep-alive connection pool per upstream (proto://address:port). A pool
// whose upstream left every route drains: its in-flight requests finish, then
// its sockets are closed.
import http from 'node:http';
import https from 'node:https';

export interface UpstreamAddress {
  /** proto://address:port */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly proto: 'http' | 'https';
  readonly tlsSkipVerify: boolean;
}

export interface PoolOptions {
  /** sockets per upstream (in use + idle) */
  maxSockets: number;
  /** idle keep-alive sockets kept per upstream */
  maxFreeSockets: number;
  /** an idle pooled socket is closed after this long */
  idleTimeoutMs: number;
}

export class Pool {
  readonly agent: http.Agent;
  inflight = 0;
  draining = false;
  readonly upstream: UpstreamAddress;
  constructor(upstream: UpstreamAddress, o: PoolOptions) {
    this.upstream = upstream;
    const common = { keepAlive: true, maxSockets: o.maxSockets, maxFreeSockets: o.maxFreeSockets, timeout: o.idleTimeoutMs, scheduling: 'lifo' as const };
    this.agent = upstream.proto === 'https' ? new https.Agent({ ...common, rejectUnauthorized: !upstream.tlsSkipVerify }) : new http.Agent(common);
  }
  release(): void {
    this.inflight--;
    if (this.draining && this.inflight === 0) this.agent.destroy();
  }
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

  /** keeps the pools of these upstreams; the others drain (close once idle) */
  retain(keys: ReadonlySet<string>): number {
    let drained = 0;
    for (const [k, p] of this.pools) {
      if (keys.has(k)) continue;
      this.pools.delete(k);
      p.draining = true;
      drained++;
      if (p.inflight === 0) p.agent.destroy();
    }
    return drained;
  }

  get size(): number { return this.pools.size; }

  closeAll(): void {
    for (const p of this.pools.values()) p.agent.destroy();
    this.pools.clear();
  }
}
