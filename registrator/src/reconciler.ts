// Level-triggered reconciliation (DESIGN.md, idea 1). A source says what should
// be registered (a full snapshot); the sink says what Consul holds that this
// owner wrote; the reconciler applies only the difference. Events only say
// "look again soon"; a full pass (re-reading Consul) runs at start, every
// resync, when the sink reports its records changed (an agent restart), and
// after an apply failed. Nothing is written while `canWrite()` is false (a
// follower replica), and nothing not ours is ever touched.
import { specOf, errorMessage, sleep, untilWoken, mapLimit, Backoff, type Logger, type OwnerId, type ServiceInstance } from '@gantry/core';
import type { Source, Sink, PlanEntry } from './source-sink.ts';

export type { Source, Sink, PlanEntry, Action } from './source-sink.ts';

export type Reason = 'start' | 'event' | 'resync' | 'consul-changed' | 'retry' | 'leader';
export interface Applied extends PlanEntry {
  reason: Reason | 'orphan';
  ok: boolean;
  error?: string;
  ms: number;
}

/** spec hashes by instance object: a source that hands back the same objects pass after pass (Docker) hashes each once */
const specs = new WeakMap<ServiceInstance, string>();
function specOnce(i: ServiceInstance): string {
  let s = specs.get(i);
  if (s === undefined) { s = specOf(i); specs.set(i, s); }
  return s;
}

/** What to do to turn `actual` into `desired` (both keyed by instance id). */
export function plan(desired: readonly ServiceInstance[], actual: readonly ServiceInstance[]): PlanEntry[] {
  const want = new Map(desired.map((i) => [i.id as string, i]));
  const have = new Map(actual.map((i) => [i.id as string, i]));
  const out: PlanEntry[] = [];
  for (const [id, i] of want) {
    const prev = have.get(id);
    if (!prev) out.push({ action: 'register', instance: i });
    else if (specOnce(prev) !== specOnce(i)) out.push({ action: 'update', instance: i, previous: prev });
    else if ((prev.status ?? 'passing') !== (i.status ?? 'passing') || Boolean(prev.maintenance) !== Boolean(i.maintenance)) {
      out.push({ action: 'status', instance: i, previous: prev });
    }
  }
  for (const [id, i] of have) if (!want.has(id)) out.push({ action: 'deregister', instance: i });
  return out;
}

export interface ReconcilerOptions {
  source: Source;
  sink: Sink;
  owner: OwnerId;
  log: Logger;
  /** full pass every resyncMs (default 30 s) */
  resyncMs?: number;
  /** events within this many ms are taken together (default 10 ms; 0: a pass starts at once, and events during it are taken together for the next) */
  debounceMs?: number;
  /** how many sink calls at once (default 16) */
  concurrency?: number;
  /** false while this replica may not write (follower) */
  canWrite?: () => boolean;
  /** every applied change, for the audit trail and metrics */
  onApplied?: (a: Applied) => void;
  /** every finished pass */
  onPass?: (p: { reason: Reason; full: boolean; planned: number; failed: number; ms: number; held: number; desired: number }) => void;
}

export class Reconciler {
  private readonly o: ReconcilerOptions;
  /** what Consul holds, as of the last full read plus what we applied since */
  private actual = new Map<string, ServiceInstance>();
  private haveActual = false;
  private pending: { reason: Reason; full: boolean } | undefined;
  private wake: (() => void) | undefined;
  private passes = 0;
  /** one retry at a time, backing off while the failure lasts */
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly retryBackoff = new Backoff({ baseMs: 500, maxMs: 30_000 });

  constructor(o: ReconcilerOptions) {
    this.o = o;
  }

  /** Ask for a pass soon; `full` re-reads what Consul holds first. */
  trigger(reason: Reason, full = false): void {
    const p = this.pending;
    this.pending = { reason: p && p.reason !== 'event' ? p.reason : reason, full: full || (p?.full ?? false) };
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  get passCount(): number {
    return this.passes;
  }

  /** Runs until aborted. */
  async run(signal: AbortSignal): Promise<void> {
    const pump = async (it: AsyncIterable<void>, reason: Reason, full: boolean): Promise<void> => {
      try {
        for await (const _ of it) this.trigger(reason, full);
      } catch (err) {
        if (!signal.aborted) this.o.log.error({ err: errorMessage(err) }, 'change stream ended');
      }
    };
    void pump(this.o.source.changes(signal), 'event', false);
    if (this.o.sink.changes) void pump(this.o.sink.changes(signal), 'consul-changed', true);
    const resync = setInterval(() => this.trigger('resync', true), this.o.resyncMs ?? 30_000);
    this.trigger('start', true);
    try {
      while (!signal.aborted) {
        if (!this.pending) {
          await untilWoken(signal, (wake) => { this.wake = wake; });
          if (signal.aborted) break;
          const debounce = this.o.debounceMs ?? 10;
          if (debounce > 0) await sleep(debounce, signal).catch(() => undefined);
        }
        const next = this.pending;
        this.pending = undefined;
        if (next) await this.pass(next.reason, next.full || !this.haveActual);
      }
    } finally {
      clearInterval(resync);
    }
  }

  /** One reconciliation pass. Never throws: failures are logged and retried. */
  async pass(reason: Reason, full: boolean): Promise<Applied[]> {
    const t0 = performance.now();
    if (this.o.canWrite && !this.o.canWrite()) return [];
    let desired: ServiceInstance[];
    try {
      desired = await this.o.source.snapshot({ full });
      if (full || !this.haveActual) {
        const owned = await this.o.sink.owned(this.o.owner);
        this.actual = new Map(owned.map((i) => [i.id as string, i]));
        this.haveActual = true;
      }
    } catch (err) {
      this.o.log.warn({ reason, err: errorMessage(err) }, 'reconcile: could not read source or Consul; retrying');
      this.haveActual = false;
      this.scheduleRetry();
      return [];
    }
    const t1 = performance.now();
    const entries = plan(desired, [...this.actual.values()]);
    const applied = await this.apply(entries, reason);
    if (entries.length) this.o.log.debug({ reason, full, planned: entries.length, snapshotMs: Math.round((t1 - t0) * 10) / 10, applyMs: Math.round((performance.now() - t1) * 10) / 10 }, 'pass timing');
    const failed = applied.filter((a) => !a.ok).length;
    if (failed) {
      this.haveActual = false; // we no longer know what Consul holds
      this.scheduleRetry();
    } else this.retryBackoff.reset();
    this.passes++;
    this.o.onPass?.({ reason, full, planned: entries.length, failed, ms: performance.now() - t0, held: this.actual.size, desired: desired.length });
    return applied;
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    const delay = Math.max(200, this.retryBackoff.next());
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.trigger('retry', true); }, delay);
    this.retryTimer.unref();
  }

  private async apply(entries: PlanEntry[], reason: Reason): Promise<Applied[]> {
    const sink = this.o.sink;
    if (sink.applyBatch && entries.length > 1) return this.applyBatched(entries, reason, sink.applyBatch.bind(sink), sink.batchSize ?? 32);
    return this.applyEach(entries, reason);
  }

  private why(e: PlanEntry, reason: Reason): Applied['reason'] {
    if (reason !== 'event' && this.o.source.namedByEvent?.(e.instance)) return 'event';
    return e.action === 'deregister' && (reason === 'start' || reason === 'resync' || reason === 'consul-changed' || reason === 'leader') ? 'orphan' : reason;
  }

  private recordOk(e: PlanEntry, reason: Reason, ms: number): Applied {
    if (e.action === 'deregister') this.actual.delete(e.instance.id);
    else this.actual.set(e.instance.id, e.instance);
    const why = this.why(e, reason);
    const a: Applied = { ...e, reason: why, ok: true, ms };
    this.o.log.info({ action: e.action, service: e.instance.name, instance: e.instance.id, origin: e.instance.origin, reason: why }, `${e.action} ${e.instance.name}`);
    this.o.onApplied?.(a);
    return a;
  }

  private async applyBatched(entries: PlanEntry[], reason: Reason, batch: (e: readonly PlanEntry[]) => Promise<void>, size: number): Promise<Applied[]> {
    const chunks: PlanEntry[][] = [];
    for (let i = 0; i < entries.length; i += size) chunks.push(entries.slice(i, i + size));
    const done = await mapLimit(chunks, 4, async (chunk): Promise<Applied[]> => {
      if (this.o.canWrite && !this.o.canWrite()) return [];
      const t0 = performance.now();
      try {
        await batch(chunk);
        const ms = performance.now() - t0;
        return chunk.map((e) => this.recordOk(e, reason, ms));
      } catch (err) {
        this.o.log.warn({ changes: chunk.length, err: errorMessage(err) }, 'batch rolled back; applying its changes one by one');
        return this.applyEach(chunk, reason);
      }
    });
    return done.flat();
  }

  private async applyEach(entries: PlanEntry[], reason: Reason): Promise<Applied[]> {
    const done = await mapLimit(entries, this.o.concurrency ?? 16, async (e): Promise<Applied | undefined> => {
      if (this.o.canWrite && !this.o.canWrite()) return undefined;
      const t0 = performance.now();
      const why = this.why(e, reason);
      try {
        if (e.action === 'deregister') await this.o.sink.deregister(e.instance);
        else await this.o.sink.register(e.instance, e.previous);
        return this.recordOk(e, reason, performance.now() - t0);
      } catch (err) {
        const a: Applied = { ...e, reason: why, ok: false, error: errorMessage(err), ms: performance.now() - t0 };
        this.o.log.error({ action: e.action, service: e.instance.name, instance: e.instance.id, err: a.error }, `${e.action} failed`);
        this.o.onApplied?.(a);
        return a;
      }
    });
    return done.filter((a): a is Applied => a !== undefined);
  }
}
