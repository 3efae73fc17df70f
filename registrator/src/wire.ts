// One part of the registrator (Docker or Kubernetes): a source and a sink joined
// by a reconciler whose passes and changes feed the metrics and the audit trail.
import { asOwnerId, type Flags, type Logger } from '@gantry/core';
import { Reconciler, type Applied } from './reconciler.ts';
import type { Source, Sink } from './source-sink.ts';
import type { AuditWriter } from '@gantry/audit';
import type { Heartbeat } from '@gantry/audit/heartbeat';
import { entryFromApplied } from './audit-entry.ts';
import type { RegistratorMetrics } from './metrics.ts';

export interface Part { name: 'docker' | 'kubernetes' | 'zookeeper' | 'zookeeper-export' | 'static'; reconciler: Reconciler; healthy: () => boolean }

/** `debounceMs`: see ReconcilerOptions (Docker: 0, a pass per event burst at once; Kubernetes: 10, one change touches several objects) */
export function wire(name: Part['name'], source: Source, sink: Sink, owner: string, f: Flags, log: Logger, m: RegistratorMetrics, audit: AuditWriter | undefined, canWrite?: () => boolean, hb?: Heartbeat, debounceMs?: number): Reconciler {
  return new Reconciler({
    source, sink, owner: asOwnerId(owner), log: log.child({ source: name }), resyncMs: f.ms('resync'),
    ...(debounceMs !== undefined ? { debounceMs } : {}),
    ...(canWrite ? { canWrite } : {}),
    onApplied: (a: Applied) => {
      m.applied.inc({ source: name, action: a.action, reason: a.reason, result: a.ok ? 'ok' : 'error' });
      if (a.ok && audit) audit.append(entryFromApplied(owner, a));
      hb?.applied(a.action, a.ok);
    },
    onPass: (p) => {
      hb?.pass(p);
      m.passes.inc({ source: name, reason: p.reason, full: String(p.full) });
      m.passSeconds.observe({ source: name }, p.ms / 1000);
      m.instances.set({ source: name }, p.desired);
    },
  });
}
