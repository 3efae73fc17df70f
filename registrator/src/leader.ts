// Leader election through a Consul session lock, so several registrator
// replicas can run and only one writes. The session is tied to a TTL check this
// process keeps passing: when the process dies, the check goes critical within
// `ttl`, Consul invalidates the session and releases the lock, and a follower
// (blocked on the key) takes it.
//
// The check lives on an agent and the session names that agent's node, so the
// check, the session and every heartbeat go through one pinned connection
// (the same agent even behind a load balancer), and the session names the node
// the agent said it is. The lock key is watched with core's blocking query.
// After the holder's session is invalidated Consul refuses the lock for the
// lock-delay: a refused acquisition of a free key waits a quarter of it before
// trying again, instead of asking in a loop.
import { BlockingQuery, GantryError, Backoff, sleep, errorMessage, type ConsulClient, type Logger } from '@gantry/core';

export interface LeaderOptions {
  consul: ConsulClient;
  /** the KV key that is the lock, e.g. gantry/registrator/<cluster>/leader */
  key: string;
  /** this replica's id (written as the lock's value) */
  id: string;
  /** TTL of the liveness check; failover takes about this long. Default 5s */
  ttlMs?: number;
  /** the session's lock-delay (Consul's default is 15 s). Default 1s */
  lockDelayMs?: number;
  log: Logger;
  onChange: (leader: boolean) => void;
  /** every request this election sends (for tests and metrics) */
  onRequest?: (what: string) => void;
}

interface KvEntry { Session?: string; Value?: string | null }

export class LeaderElection {
  private readonly o: LeaderOptions;
  private leading = false;
  private session: string | undefined;
  private readonly checkId: string;
  private readonly lockDelayMs: number;
  /** the session whose "following" was logged: once per session, not per lock change */
  private followingLogged: string | undefined;
  /** agent-local calls (check, session, heartbeat) over one connection: one agent */
  private agent: ConsulClient | undefined;
  constructor(o: LeaderOptions) {
    this.o = o;
    this.checkId = `gantry-leader:${o.id}`;
    this.lockDelayMs = o.lockDelayMs ?? 1000;
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

  private call<T>(what: string, client: ConsulClient, method: string, path: string, opts: Parameters<ConsulClient['request']>[2] = {}): Promise<{ body: T; status: number }> {
    this.o.onRequest?.(what);
    return client.request<T>(method, path, opts);
  }

  /** Runs until aborted; then releases the lock and removes the session and check. */
  async run(signal: AbortSignal): Promise<void> {
    const ttl = this.o.ttlMs ?? 5000;
    this.agent = this.o.consul.pinned?.() ?? this.o.consul;
    const agent = this.agent;
    const heartbeat = setInterval(() => {
      this.call('check-pass', agent, 'PUT', `/v1/agent/check/pass/${encodeURIComponent(this.checkId)}`).catch((err: unknown) => {
        this.o.log.warn({ err: errorMessage(err) }, 'leader liveness check update failed');
      });
    }, Math.max(200, Math.floor(ttl / 3)));
    const backoff = new Backoff({ baseMs: 250, maxMs: 5000 });
    // one blocking query for the whole run: its spacing and rate limit hold across attempts
    const lock = new BlockingQuery<KvEntry[] | null>({
      consul: this.o.consul, path: `/v1/kv/${this.keyPath()}`, endpoint: 'leader lock', waitMs: 30_000, timeoutMs: 10_000,
      minSpacingMs: 50, rate: { perSecond: 10, burst: 5 }, backoff: { baseMs: 250, maxMs: 5000 }, signal,
      notFound: () => null, onRequest: () => this.o.onRequest?.('lock-read'),
    });
    try {
      while (!signal.aborted) {
        try {
          await this.ensureSession(ttl, signal);
          await this.contend(lock, signal);
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
      if (agent !== this.o.consul) agent.close();
    }
  }

  private keyPath(): string {
    return encodeURIComponent(this.o.key).replace(/%2F/g, '/');
  }

  private async ensureSession(ttlMs: number, signal: AbortSignal): Promise<void> {
    const agent = this.agent!;
    if (this.session) {
      const info = await this.call<unknown[] | null>('session-info', this.o.consul, 'GET', `/v1/session/info/${this.session}`, { signal });
      if (Array.isArray(info.body) && info.body.length) return;
      this.o.log.info({ session: this.session }, 'leader session was invalidated; making a new one');
    }
    const self = await this.call<{ Config?: { NodeName?: string } }>('agent-self', agent, 'GET', '/v1/agent/self', { signal });
    const node = self.body?.Config?.NodeName;
    if (!node) throw new GantryError('E_CONSUL_HTTP', 'the Consul agent did not say its node name (/v1/agent/self)');
    // the liveness check belongs to a service of its own: a node-level check going critical when a
    // replica dies would mark every service on this agent's node critical (and stay so)
    await this.call('check-register', agent, 'PUT', '/v1/agent/service/register', {
      body: {
        ID: this.checkId, Name: 'gantry-registrator-replica', Tags: ['gantry-internal'], Meta: { 'gantry-leader-key': this.o.key },
        Check: { CheckID: this.checkId, Name: 'Gantry registrator replica alive', TTL: `${Math.ceil(ttlMs / 1000)}s`, Status: 'passing', DeregisterCriticalServiceAfter: '1m' },
      },
      signal,
    });
    // Node named explicitly: if the check went to another agent, Consul refuses the session ("Missing check")
    const created = await this.call<{ ID: string }>('session-create', agent, 'PUT', '/v1/session/create', {
      body: { Name: `gantry-registrator ${this.o.id}`, Node: node, NodeChecks: ['serfHealth'], ServiceChecks: [{ ID: this.checkId }], LockDelay: `${this.lockDelayMs}ms`, Behavior: 'release' },
      signal,
    });
    this.session = created.body.ID;
  }

  /** Tries to take the lock; then blocks on the key until something changes. */
  private async contend(lock: BlockingQuery<KvEntry[] | null>, signal: AbortSignal): Promise<void> {
    const acquired = await this.call<boolean>('acquire', this.o.consul, 'PUT', `/v1/kv/${this.keyPath()}`, { query: { acquire: this.session }, body: this.o.id, signal });
    const got = acquired.body === true;
    this.set(got);
    lock.reset(); // the first read is plain: the key as it is now
    for (;;) {
      const res = await lock.next({ throwErrors: true });
      const holder = res.body?.[0]?.Session;
      if (holder === this.session) { this.set(true); continue; }
      this.set(false);
      if (holder && this.followingLogged !== this.session) {
        this.followingLogged = this.session;
        this.o.log.info({ key: this.o.key, replica: this.o.id }, 'following: another replica holds the leader lock');
      }
      if (!holder) {
        // free, yet our acquisition was refused: the lock-delay after the last holder's session
        // ended. Consul refuses every acquisition until it is over; wait part of it, not in a loop
        if (!got) await sleep(this.lockDelayMs / 4 + Math.random() * (this.lockDelayMs / 8), signal);
        return; // try to acquire again
      }
      // someone else holds it; is our own session still alive?
      const info = await this.call<unknown[] | null>('session-info', this.o.consul, 'GET', `/v1/session/info/${this.session}`, { signal });
      if (!Array.isArray(info.body) || info.body.length === 0) return;
    }
  }

  private async release(): Promise<void> {
    const agent = this.agent ?? this.o.consul;
    if (this.session) {
      await this.call('release', this.o.consul, 'PUT', `/v1/kv/${this.keyPath()}`, { query: { release: this.session }, body: this.o.id, timeoutMs: 2000 }).catch(() => undefined);
      await this.call('session-destroy', agent, 'PUT', `/v1/session/destroy/${this.session}`, { timeoutMs: 2000 }).catch(() => undefined);
    }
    await this.call('check-deregister', agent, 'PUT', `/v1/agent/service/deregister/${encodeURIComponent(this.checkId)}`, { timeoutMs: 2000 }).catch(() => undefined);
  }
}
