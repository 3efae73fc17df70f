// Cluster benchmarks (`node bench/run.ts cluster`): each chaos case of issue 14
// on a real Consul cluster (3 servers, 3 hosts with a registrator each, an edge
// agent with the templater and HAProxy), during churn of up to
// GANTRY_CLUSTER_BENCH_MAX containers (default 60; one start or stop every
// 250 ms for 20 s). Per case: lost_registrations (running containers missing
// from the catalog when the case gave up after 2 min; target 0) and
// converge_ms (end of the fault and churn → catalog and HAProxy exact; target
// ≤ 10 s). Baseline: the same churn without a fault, in the same run.
import { startClusterStack } from '../test/harness/cluster-stack.ts';
import { quietChurn, leaderKill, agentKillEmpty, serverFreeze, partition, redisMasterKill, partsKill, auditCheck, type CaseResult, type CaseOptions } from '../test/harness/cluster-chaos.ts';
import { result, TWO_CORES, type BenchResult } from './lib.ts';

const SUITE = 'cluster';

export async function run(): Promise<BenchResult[]> {
  const max = Number(process.env.GANTRY_CLUSTER_BENCH_MAX ?? 60);
  const o: CaseOptions = { churnMs: 20_000, intervalMs: 250, max, timeoutMs: 120_000, log: (m) => process.stderr.write(`cluster: ${m}\n`) };
  const stack = await startClusterStack();
  const out: BenchResult[] = [];
  try {
    for (const h of stack.hosts) for (let i = 0; i < 5; i++) await stack.startContainer(h);
    await stack.waitConverged('initial containers');
    const base = await quietChurn(stack, o);
    const cases: Array<() => Promise<CaseResult>> = [
      () => leaderKill(stack, o),
      () => agentKillEmpty(stack, o),
      () => serverFreeze(stack, o),
      () => partition(stack, { ...o, partitionMs: 30_000 }),
      () => redisMasterKill(stack, o),
      () => partsKill(stack, o),
    ];
    const notes = `${TWO_CORES}; 3 Consul servers + 4 agents, 3 registrators, templater + HAProxy, Redis + Sentinel on one machine; churn: one start/stop every ${o.intervalMs} ms for ${o.churnMs} ms, ≤${max} containers (shared dockerd, label per host)`;
    out.push(result({ suite: SUITE, metric: 'converge_ms.no_fault', value: base.convergeMs, unit: 'ms', n: base.started + base.stopped, baseline_metric: null, baseline_value: null, notes: `the baseline: churn without a fault; ${notes}` }));
    for (const c of cases) {
      const r = await c();
      const extra = Object.entries(r.notes).map(([k, v]) => `${k}=${v}`).join(' ');
      out.push(result({ suite: SUITE, metric: `lost_registrations.${r.name}`, value: r.lost, unit: 'count', n: r.started + r.stopped, baseline_metric: 'lost_registrations.no_fault', baseline_value: base.lost, ratio: null, notes: `target 0; orphans=${r.orphans}; ${extra}` }));
      out.push(result({ suite: SUITE, metric: `converge_ms.${r.name}`, value: r.convergeMs, unit: 'ms', n: r.started + r.stopped, baseline_metric: 'converge_ms.no_fault', baseline_value: base.convergeMs || null, notes: `target ≤ 10000; -1 = not converged in ${o.timeoutMs} ms; ${extra}; ${notes}` }));
      if (r.name === 'redis_master_kill') {
        const a = await auditCheck(stack);
        out.push(result({ suite: SUITE, metric: 'audit_lost_entries.redis_master_kill', value: a.applied - a.written - a.dropped, unit: 'count', n: a.applied, baseline_metric: null, baseline_value: null, ratio: null, notes: `applied=${a.applied} written=${a.written} dropped=${a.dropped} in_stream=${a.stream} duplicates=${a.duplicates}; no baseline (the count itself is the figure)` }));
      }
    }
  } finally {
    await stack.stop();
  }
  return out;
}
