// The chaos cases of issue 14, each run against a ClusterStack while its
// containers churn, shared by test/cluster/chaos.test.ts (which asserts the
// exact end state) and bench/cluster.ts (which prints the figures). A case
// ends when Consul's catalog equals what runs (no orphan, none missing, each
// on its host's node) and HAProxy serves exactly the passing set, for 2 s in a
// row; `convergeMs` is the time from the end of the fault and the churn (the
// last restart, resume, heal or container change) to the first moment of that state.
import type { ClusterStack, Host } from './cluster-stack.ts';
import { createRedis } from '@gantry/core/redis';
import { WRITER_FIELD, SEQ_FIELD } from '../../audit/src/writer.ts';
import { sleep, waitUntil } from './process.ts';

export interface CaseResult {
  name: string;
  convergeMs: number;
  /** running containers missing from the catalog when the case gave up (0 when it converged) */
  lost: number;
  orphans: number;
  /** churn operations during the case */
  started: number;
  stopped: number;
  notes: Record<string, number | string>;
}

export interface CaseOptions {
  /** how long the churn runs (ms), and one start or stop every intervalMs */
  churnMs?: number;
  intervalMs?: number;
  /** containers kept between min and max */
  max?: number;
  /** how long convergence may take before the case fails */
  timeoutMs?: number;
  log?: (msg: string) => void;
}

type Case = (s: ClusterStack, o: Required<CaseOptions>) => Promise<{ faultEnd: number; started: number; stopped: number; notes: Record<string, number | string> }>;

const defaults = (o: CaseOptions): Required<CaseOptions> => ({ churnMs: 15_000, intervalMs: 400, max: 30, timeoutMs: 120_000, log: () => undefined, ...o });

async function finish(s: ClusterStack, name: string, o: Required<CaseOptions>, run: ReturnType<Case>): Promise<CaseResult> {
  const { faultEnd, started, stopped, notes } = await run;
  let convergeMs: number;
  try {
    const t0 = Date.now();
    convergeMs = t0 + await s.waitConverged(name, { timeoutMs: o.timeoutMs }) - faultEnd;
  } catch (err) {
    const d = await s.catalogDiff();
    o.log(`${name}: not converged: ${String(err)}`);
    return { name, convergeMs: -1, lost: d.missing.length, orphans: d.orphans.length, started, stopped, notes };
  }
  o.log(`${name}: converged ${convergeMs} ms after the fault ended (${started} started, ${stopped} stopped)`);
  return { name, convergeMs: Math.max(0, convergeMs), lost: 0, orphans: 0, started, stopped, notes };
}

/** starts a churn in the background; `done` resolves with its counts */
function background(s: ClusterStack, o: Required<CaseOptions>, hosts?: Host[]): { done: Promise<{ started: number; stopped: number }> } {
  return { done: s.churn({ durationMs: o.churnMs, intervalMs: o.intervalMs, max: o.max, ...(hosts ? { hosts } : {}) }) };
}

/** The Consul leader SIGKILLed while containers start and stop; restarted once the churn ends. */
export const leaderKill = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'leader_kill', o, (async () => {
    const churn = background(s, o);
    await sleep(o.churnMs / 5);
    const leader = await s.cluster.leader();
    const t0 = Date.now();
    await leader.kill();
    const next = await s.cluster.leader(60_000);
    const electionMs = Date.now() - t0;
    o.log(`leader ${leader.name} killed; ${next.name} elected in ${electionMs} ms`);
    const { started, stopped } = await churn.done;
    await leader.restart();
    return { faultEnd: Date.now(), started, stopped, notes: { election_ms: electionMs } };
  })());
};

/** A host's client agent SIGKILLed, its host's containers changed, the agent restarted with an empty data dir. */
export const agentKillEmpty = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'agent_kill_empty', o, (async () => {
    const host = s.hosts[0]!;
    await host.node.kill();
    const churn = background(s, { ...o, churnMs: Math.min(o.churnMs, 8000) }, [host]);
    const { started, stopped } = await churn.done;
    await host.node.restart({ empty: true });
    return { faultEnd: Date.now(), started, stopped, notes: {} };
  })());
};

/** A server (the leader) frozen with SIGSTOP for longer than the election timeout, then resumed. */
export const serverFreeze = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'server_freeze', o, (async () => {
    // the two other servers must make a quorum: every server back from an earlier case (a
    // restarted leader) and caught up in Raft before one is frozen, else no one can be elected.
    // Up to 180 s: after the agent-restart case a member was twice not seen alive by every node
    // within 90 s (serf retries a failed member every 30 s); a precondition, not a figure
    await s.cluster.waitHealthy(180_000);
    // Healthy alone is not enough: a restarted server rejoins as a healthy non-voter and is
    // promoted only after autopilot's stabilization time (10 s); frozen before that, the leader
    // leaves one voter of three (seen once: no leader for 60 s)
    await waitUntil('every Consul server a healthy Raft voter', async () => {
      const server = await s.cluster.anyServer();
      const res = await fetch(`${server.httpAddr}/v1/operator/autopilot/health`, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) return false;
      const h = (await res.json()) as { Healthy: boolean; Servers?: Array<{ Voter: boolean; Healthy: boolean }> };
      return h.Healthy && (h.Servers?.length ?? 0) === s.cluster.servers.length && h.Servers!.every((x) => x.Voter && x.Healthy);
    }, { timeoutMs: 60_000, intervalMs: 250 });
    const churn = background(s, o);
    await sleep(o.churnMs / 5);
    const frozen = await s.cluster.leader();
    frozen.freeze();
    try {
      const next = await s.cluster.leader(60_000);
      o.log(`leader ${frozen.name} frozen; ${next.name} took over`);
      await sleep(8000); // well past the election timeout (1 s with raft_multiplier 1)
    } finally {
      frozen.thaw(); // a failed case never leaves the cluster without its server
    }
    const { started, stopped } = await churn.done;
    return { faultEnd: Date.now(), started, stopped, notes: { frozen_ms: 8000 } };
  })());
};

/**
 * Host c's link down for partitionMs while all hosts churn: its node is seen
 * failed and HAProxy stops serving its instances (asserted during the
 * partition: HAProxy equals the passing set); then healed.
 */
export const partition = (s: ClusterStack, opts: CaseOptions & { partitionMs?: number } = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  const partitionMs = opts.partitionMs ?? 30_000;
  return finish(s, 'partition', o, (async () => {
    const host = s.hosts.find((h) => h.node.netns)!;
    const t0 = Date.now();
    await s.cluster.partition(host.node);
    const churn = background(s, { ...o, churnMs: Math.min(o.churnMs, partitionMs - 5000) });
    // while cut off: its instances are not passing and HAProxy does not serve them
    const isolatedMs = await waitUntil('the partitioned host\'s instances out of HAProxy', async () => {
      const server = await s.cluster.anyServer();
      const res = await fetch(`${server.httpAddr}/v1/health/node/${host.node.name}`, { signal: AbortSignal.timeout(5000) });
      const checks = (await res.json()) as Array<{ CheckID: string; Status: string }>;
      if (checks.find((c) => c.CheckID === 'serfHealth')?.Status !== 'critical') return undefined;
      const h = await s.haproxyDiff();
      return !h.missing.length && !h.extra.length ? Date.now() - t0 : undefined;
    }, { timeoutMs: partitionMs, intervalMs: 250 });
    o.log(`host ${host.node.name} partitioned; failed and out of HAProxy after ${isolatedMs} ms`);
    const { started, stopped } = await churn.done;
    await sleep(Math.max(0, partitionMs - (Date.now() - t0)));
    await s.cluster.heal(host.node);
    return { faultEnd: Date.now(), started, stopped, notes: { isolated_ms: isolatedMs } };
  })());
};

/**
 * The Redis master SIGKILLed during churn: Sentinel promotes the replica and
 * every audit entry is in the stream once or counted as dropped. notes carry
 * the audit counts; the caller asserts them.
 */
export const redisMasterKill = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'redis_master_kill', o, (async () => {
    const churn = background(s, o);
    await sleep(o.churnMs / 4);
    const { failoverMs } = await s.redis.killMaster();
    o.log(`redis master killed; sentinel failover in ${failoverMs} ms`);
    const { started, stopped } = await churn.done;
    return { faultEnd: Date.now(), started, stopped, notes: { failover_ms: failoverMs } };
  })());
};

export interface AuditCheck { applied: number; written: number; dropped: number; stream: number; duplicates: number; pending: number }

/** Every registrator's applied changes against the audit stream (after each flushed its buffer). */
export async function auditCheck(s: ClusterStack): Promise<AuditCheck> {
  let pending = 0;
  await waitUntil('audit buffers flushed', async () => {
    pending = 0;
    for (const h of s.hosts) {
      const res = await fetch(`${h.registrator.adminUrl}/healthz`, { signal: AbortSignal.timeout(5000) });
      pending += ((await res.json()) as { auditPending?: number }).auditPending ?? 0;
    }
    return pending === 0;
  }, { timeoutMs: 60_000, intervalMs: 500 }).catch(() => undefined);
  let applied = 0;
  let written = 0;
  let dropped = 0;
  for (const h of s.hosts) {
    applied += await h.registrator.metric('gantry_registrator_changes_total', { result: 'ok' });
    written += await h.registrator.metric('gantry_audit_entries_written_total');
    dropped += await h.registrator.metric('gantry_audit_entries_dropped_total');
  }
  const redis = createRedis(s.redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    await redis.connect();
    const entries = await redis.xrange(s.auditKey, '-', '+');
    // an entry is its writer's id and sequence number
    const eids = entries.map(([, f]) => `${f[f.indexOf(WRITER_FIELD) + 1]}/${f[f.indexOf(SEQ_FIELD) + 1]}`);
    return { applied, written, dropped, stream: entries.length, duplicates: eids.length - new Set(eids).size, pending };
  } finally {
    redis.disconnect();
  }
}

/** A host's registrator and the templater SIGKILLed at random moments of the churn, each restarted 2 s later. */
export const partsKill = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'parts_kill', o, (async () => {
    const churn = background(s, o);
    const victim = s.hosts[1]!.registrator;
    const atR = 1000 + Math.random() * (o.churnMs / 2);
    const atT = 1000 + Math.random() * (o.churnMs / 2);
    const killAndRestart = async (part: typeof victim, at: number): Promise<void> => {
      await sleep(at);
      await part.kill();
      o.log(`${part.name} SIGKILLed at ${Math.round(at)} ms`);
      await sleep(2000);
      await part.restart();
    };
    await Promise.all([killAndRestart(victim, atR), killAndRestart(s.templater, atT)]);
    const { started, stopped } = await churn.done;
    return { faultEnd: Date.now(), started, stopped, notes: { registrator_kill_at_ms: Math.round(atR), templater_kill_at_ms: Math.round(atT) } };
  })());
};

/** The same churn without a fault: the baseline the chaos cases' convergence is read against. */
export const quietChurn = (s: ClusterStack, opts: CaseOptions = {}): Promise<CaseResult> => {
  const o = defaults(opts);
  return finish(s, 'no_fault', o, (async () => {
    const { started, stopped } = await background(s, o).done;
    return { faultEnd: Date.now(), started, stopped, notes: {} };
  })());
};
