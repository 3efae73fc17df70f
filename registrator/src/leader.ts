// Leader election through a Consul session lock, so several registrator
// replicas can run and only one writes. The session is tied to a TTL check this
// process keeps passing: when the process dies, the check goes critical within
// `ttl`, Consul invalidates the session and releases the lock, and a follower
// (blocked on the key) takes it.
import { Backoff, sleep, errorMessage, nextIndex, type ConsulClient, type Logger } from '@gantry/core';

export interface LeaderOptions {
  consul: ConsulClient;
  /** the KV key that is the lock, e.g. gantry/registrator/<cluster>/leader */
  key: string;
  /** this replica's id (written as the lock's value) */
  id: string;
  /** TTL of the liveness check; failover takes about this long. Default 5s */
  ttlMs?: number;
  log: Logger;
  onChange: (leader: boolean) => void;
}

interface KvEntry { Session?: string; Value?: string | null }

export class LeaderElection {
  private readonly o: LeaderOptions;
  private leading = false;
  private session: string | undefined;
  private readonly checkId: string;
  constructor(o: LeaderOptions) {
    this.o = o;
    this.checkId = `gantry-leader:${o.id}`;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private set(leader: boolean): void {
    if (leader === this.leading) return;
    this.leading = leader;
    this.o.log.info({ key: this.o.key, replica: this.o.id, leader }, leader ? 'became leader' : 'no longer leader');
    this.o.onChange(leader);
  }

  /** Runs until aborted; then releases the lock and removes the session and check. */
  async run(signal: AbortSignal): Promise<void> {
    const ttl = this.o.ttlMs ?? 5000;
    const c = this.o.consul;
    const heartbeat = setInterval(() => {
      c.request('PUT', `/v1/agent/check/pass/${encodeURIComponent(this.checkId)}`).catch((err: unknown) => {
        this.o.log.warn({ err: errorMessage(err) }, 'leader liveness check update failed');
      });
    }, Math.max(200, Math.floor(ttl / 3)));
    const backoff = new Backoff({ baseMs: 250, maxMs: 5000 });
    try {
      while (!signal.aborted) {
        try {
          await this.ensureSession(ttl, signal);
          await this.contend(signal);
          backoff.reset();
        } catch (err) {
          if (signal.aborted) break;
          this.set(false);
          this.session = undefined;
          const delay = backoff.next();
          this.o.log.warn({ key: this.o.key, err: errorMessage(err), retryInMs: delay }, 'leader election: Consul call failed');
          await sleep(delay, signal).catch(() => undefined);
        }
      }
    } finally {
      clearInterval(heartbeat);
      this.set(false);
      await this.release().catch(() => undefined);
    }
  }

  private async ensureSession(ttlMs: number, signal: AbortSignal): Promise<void> {
    if (this.session) {
      const info = await this.o.consul.request<unknown[] | null>('GET', `/v1/session/info/${this.session}`, { signal });
      if (Array.isArray(info.body) && info.body.length) return;
      this.o.log.info({ session: this.session }, 'leader session was invalidated; making a new one');
    }
    const c = this.o.consul;
    // the liveness check belongs to a service of its own: a node-level check going critical when a
    // replica dies would mark every service on this agent's node critical (and stay so)
    await c.request('PUT', '/v1/agent/service/register', {
      body: {
        ID: this.checkId, Name: 'gantry-registrator-replica', Tags: ['gantry-internal'], Meta: { 'gantry-leader-key': this.o.key },
        Check: { CheckID: this.checkId, Name: 'Gantry registrator replica alive', TTL: `${Math.ceil(ttlMs / 1000)}s`, Status: 'passing', DeregisterCriticalServiceAfter: '1m' },
      },
      signal,
    });
    const created = await c.request<{ ID: string }>('PUT', '/v1/session/create', {
      body: { Name: `gantry-registrator ${this.o.id}`, NodeChecks: ['serfHealth'], ServiceChecks: [{ ID: this.checkId }], LockDelay: '1s', Behavior: 'release' },
      signal,
    });
    this.session = created.body.ID;
  }

  /** Tries to take the lock; then blocks on the key until something changes. */
  private async contend(signal: AbortSignal): Promise<void> {
    const c = this.o.consul;
    const key = encodeURIComponent(this.o.key).replace(/%2F/g, '/');
    const acquired = await c.request<boolean>('PUT', `/v1/kv/${key}`, { query: { acquire: this.session }, body: this.o.id, signal });
    this.set(acquired.body === true);
    let index: string | undefined;
    for (;;) {
      const res = await c.request<KvEntry[] | null>('GET', `/v1/kv/${key}`, { index, wait: '30s', timeoutMs: 40_000, signal });
      index = nextIndex(index, res.index);
      const holder = res.status === 404 ? undefined : res.body?.[0]?.Session;
      if (holder === this.session) { this.set(true); continue; }
      this.set(false);
      if (!holder) return; // free: try to acquire again
      // someone else holds it; is our own session still alive?
      const info = await c.request<unknown[] | null>('GET', `/v1/session/info/${this.session}`, { signal });
      if (!Array.isArray(info.body) || info.body.length === 0) return;
    }
  }

  private async release(): Promise<void> {
    const c = this.o.consul;
    if (this.session) {
      const key = encodeURIComponent(this.o.key).replace(/%2F/g, '/');
      await c.request('PUT', `/v1/kv/${key}`, { query: { release: this.session }, body: this.o.id, timeoutMs: 2000 }).catch(() => undefined);
      await c.request('PUT', `/v1/session/destroy/${this.session}`, { timeoutMs: 2000 }).catch(() => undefined);
    }
    await c.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(this.checkId)}`, { timeoutMs: 2000 }).catch(() => undefined);
  }
}
