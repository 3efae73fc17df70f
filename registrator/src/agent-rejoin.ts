// The local Consul agent cut off from its servers (a network partition, servers
// restarted at once): Consul retries failed members only every 30 s (serf's
// reconnect interval, which Consul does not let an operator change:
// hashicorp/consul#10220), and until then the agent's node stays critical and
// nothing the registrator wrote on it is served. So every `intervalMs` the
// registrator asks how the servers see its agent's node; when they cannot be
// reached or call it failed, it asks the agent to join a server (`consul join`,
// what an operator would type), and once they see it alive it triggers a
// resync. One small request per interval while all is well (agent → server RPC).
import { errorMessage, sleep, type ConsulClient, type Logger } from '@gantry/core';

interface Member { Name: string; Addr: string; Port: number; Status: number; Tags?: Record<string, string> }

/** serf member status: 1 alive, 2 leaving, 3 left, 4 failed */
const LEFT = 3;

export interface AgentRejoinOptions {
  consul: ConsulClient;
  log: Logger;
  intervalMs: number;
  /** the agent reaches its servers again after having lost them */
  onRejoined: () => void;
  /** a join was asked of the agent (ok: it said it joined at least one) */
  onJoin?: (ok: boolean) => void;
}

export class AgentRejoin {
  private readonly o: AgentRejoinOptions;
  private cut = false;
  private node: string | undefined;
  private round = 0;
  constructor(o: AgentRejoinOptions) {
    this.o = o;
  }

  get cutOff(): boolean {
    return this.cut;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.o.intervalMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      await this.check(signal).catch((err: unknown) => {
        if (!signal.aborted) this.o.log.debug({ err: errorMessage(err) }, 'agent rejoin: check failed');
      });
    }
  }

  /**
   * One round: how do the servers see this agent's node? Unreachable, or its serfHealth
   * critical (the servers declared it failed while it was cut off; a healed partition
   * leaves it so until serf's 30 s reconnect): ask the agent to join a server, which
   * makes it learn it was declared dead and refute it at once.
   */
  async check(signal?: AbortSignal): Promise<void> {
    const timeoutMs = Math.max(1000, Math.min(5000, this.o.intervalMs));
    const opts = { timeoutMs, ...(signal ? { signal } : {}) };
    this.node ??= (await this.o.consul.request<{ Config?: { NodeName?: string } }>('GET', '/v1/agent/self', opts)).body.Config?.NodeName;
    if (!this.node) return;
    const seen = await this.o.consul.request<Array<{ CheckID: string; Status: string }>>('GET', `/v1/health/node/${encodeURIComponent(this.node)}`, opts)
      .then((r) => (r.body ?? []).find((c) => c.CheckID === 'serfHealth')?.Status ?? 'unknown', () => 'unreachable');
    if (seen === 'passing') {
      if (this.cut) {
        this.cut = false;
        this.o.log.info({ node: this.node }, 'the Consul servers see this agent alive again; resyncing');
        this.o.onRejoined();
      }
      return;
    }
    if (!this.cut) this.o.log.warn({ node: this.node, serfHealth: seen }, 'the Consul servers do not see this agent alive: asking it to rejoin them until they do');
    this.cut = true;
    const members = await this.o.consul.request<Member[]>('GET', '/v1/agent/members', opts);
    const servers = (members.body ?? []).filter((m) => m.Tags?.role === 'consul' && m.Status !== LEFT);
    if (!servers.length) return;
    let ok = false;
    // one server a round, the next one the round after: gossip brings the rest
    const m = servers[this.round++ % servers.length]!;
    const addr = m.Addr.includes(':') ? `[${m.Addr}]:${m.Port}` : `${m.Addr}:${m.Port}`;
    try {
      await this.o.consul.request('PUT', `/v1/agent/join/${encodeURIComponent(addr)}`, opts);
      ok = true;
      this.o.log.info({ server: addr }, 'asked the Consul agent to rejoin a server');
    } catch (err) {
      this.o.log.debug({ server: addr, err: errorMessage(err) }, 'agent rejoin: join refused or timed out');
    }
    this.o.onJoin?.(ok);
  }
}
