// The two sides the reconciler joins: a Source says what should be registered,
// a Sink holds what is (Docker → agent sink, Kubernetes → catalog sink).
import type { OwnerId, ServiceInstance, SourceKind } from '@gantry/core';

export interface Source {
  readonly kind: SourceKind;
  /** the desired instances; `full`: read everything again rather than only what events named */
  snapshot(opts?: { full: boolean }): Promise<ServiceInstance[]>;
  changes(signal: AbortSignal): AsyncIterable<void>;
  /**
   * optional: true when an event named this instance's origin since the
   * snapshot before the last one, so a change a full pass applies for it is
   * recorded as caused by the event (the audit trail says "event", not "resync")
   */
  namedByEvent?(instance: ServiceInstance): boolean;
}

export type Action = 'register' | 'update' | 'status' | 'deregister';

export interface PlanEntry { action: Action; instance: ServiceInstance; previous?: ServiceInstance }

export interface Sink {
  owned(owner: OwnerId): Promise<ServiceInstance[]>;
  register(instance: ServiceInstance, previous?: ServiceInstance): Promise<void>;
  deregister(instance: ServiceInstance): Promise<void>;
  /** optional: yields when records this owner wrote may have changed behind our back */
  changes?(signal: AbortSignal): AsyncIterable<void>;
  /** optional: apply many changes at once (all or none); a failed batch is retried one by one */
  applyBatch?(entries: readonly PlanEntry[]): Promise<void>;
  readonly batchSize?: number;
}
