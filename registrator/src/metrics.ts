// The registrator's Prometheus metrics.
import { Counter, Gauge, Histogram, type Registry } from '@gantry/core';

export function registratorMetrics(registry: Registry) {
  return {
    applied: new Counter({ name: 'gantry_registrator_changes_total', help: 'changes applied to Consul', labelNames: ['source', 'action', 'reason', 'result'], registers: [registry] }),
    passes: new Counter({ name: 'gantry_registrator_reconcile_passes_total', help: 'reconciliation passes', labelNames: ['source', 'reason', 'full'], registers: [registry] }),
    passSeconds: new Histogram({ name: 'gantry_registrator_reconcile_seconds', help: 'time of one reconciliation pass', labelNames: ['source'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    instances: new Gauge({ name: 'gantry_registrator_instances', help: 'instances this registrator wants registered', labelNames: ['source'], registers: [registry] }),
    problems: new Counter({ name: 'gantry_registrator_bad_metadata_total', help: 'containers/services/ports skipped for bad labels or annotations', labelNames: ['source'], registers: [registry] }),
    escaped: new Counter({ name: 'gantry_registrator_escaped_total', help: 'names, IDs and meta keys escaping changed to fit Consul (each logged at warn with the original)', labelNames: ['source', 'what'], registers: [registry] }),
    streamRestarts: new Counter({ name: 'gantry_registrator_source_restarts_total', help: 'event streams or watches re-opened', labelNames: ['source', 'stream', 'reason'], registers: [registry] }),
    auditWritten: new Counter({ name: 'gantry_audit_entries_written_total', help: 'audit entries written to Redis', registers: [registry] }),
    auditDropped: new Counter({ name: 'gantry_audit_entries_dropped_total', help: 'audit entries dropped because the buffer was full while Redis was down or slow (each entry is written or dropped, exactly once)', registers: [registry] }),
    auditPending: new Gauge({ name: 'gantry_audit_entries_pending', help: 'audit entries waiting for Redis', registers: [registry] }),
    agentJoins: new Counter({ name: 'gantry_registrator_agent_joins_total', help: 'joins asked of the local Consul agent while the servers did not see it alive (result: ok, failed)', labelNames: ['result'], registers: [registry] }),
    agentCutOff: new Gauge({ name: 'gantry_registrator_agent_cut_off', help: '1 while the Consul servers cannot be reached through the local agent or call its node failed', registers: [registry] }),
    leader: new Gauge({ name: 'gantry_registrator_leader', help: '1 while this replica holds the leader lock (or runs without one)', registers: [registry] }),
  };
}
export type RegistratorMetrics = ReturnType<typeof registratorMetrics>;
