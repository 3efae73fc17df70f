// The runner's side of the VIP pool: assignment while a view is built (an
// exhausted pool is an error naming the pool, logged and counted), the grace
// period of groups that no longer want a VIP (given back when it runs out,
// by a timer when no render comes), the state file, and the interface.
import { errorMessage, escapeLogField, type Logger } from '@gantry/core';
import { VipPoolExhausted, type VipPool } from '../vip/pool.ts';
import type { VipInterface } from '../vip/iface.ts';
import type { TemplaterMetrics } from '../metrics.ts';

export class VipKeeper {
  private readonly pool: VipPool;
  private readonly iface: VipInterface | undefined;
  private readonly log: Logger;
  private readonly metrics: TemplaterMetrics;
  private timer: NodeJS.Timeout | undefined;
  private reported = new Set<string>();
  private exhaustedNow = new Set<string>();
  private stopped = false;

  constructor(o: { pool: VipPool; iface?: VipInterface | undefined; log: Logger; metrics: TemplaterMetrics }) {
    this.pool = o.pool;
    this.iface = o.iface;
    this.log = o.log;
    this.metrics = o.metrics;
  }

  /** the VIP of a group while a view is built; null (reported) when the pool is exhausted */
  assign(key: string): string | null {
    try {
      return this.pool.assign(key);
    } catch (err) {
      if (!(err instanceof VipPoolExhausted)) throw err;
      this.exhaustedNow.add(key);
      if (!this.reported.has(key)) {
        this.metrics.skipped.inc({ reason: 'vip_pool_exhausted' });
        this.log.error({ code: err.code, pool: err.pool, group: escapeLogField(key, 120), err: err.message }, 'VIP pool exhausted: the L4 service is not served until an address is free');
      }
      return null;
    }
  }

  /** after a view: marks what is in use, gives back what ran out of grace, saves, adds VIPs to the interface */
  async afterView(inUse: readonly { key: string; vip: string }[]): Promise<void> {
    this.reported = this.exhaustedNow;
    this.exhaustedNow = new Set();
    const freed = this.pool.release(new Set(inUse.map((g) => g.key)));
    await this.save();
    // reported once the pool file says so (what is logged as given back is given back on disk too)
    this.report(freed);
    this.schedule();
    if (this.iface && inUse.length) {
      try {
        const added = await this.iface.ensure(inUse.map((g) => g.vip));
        if (added.length) this.log.info({ vips: added }, 'VIPs added to the interface');
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'cannot add VIPs; HAProxy will not be able to bind them');
      }
    }
  }

  /** VIPs no applied render and no current view uses come off the interface */
  prune(keep: ReadonlySet<string>): void {
    if (!this.iface) return;
    this.iface.prune(keep).then((removed) => {
      if (removed.length) this.log.info({ vips: removed }, 'VIPs no longer used taken off the interface');
    }, (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'cannot remove unused VIPs'));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private report(freed: ReadonlyArray<{ key: string; vip: string }>): void {
    for (const f of freed) {
      this.metrics.vipReleased.inc();
      this.log.info({ group: escapeLogField(f.key, 120), vip: f.vip, pool: this.pool.describe() }, 'VIP given back to the pool: its group no longer wanted it for the grace period');
    }
    this.metrics.vipFree.set(this.pool.free());
  }

  private async save(): Promise<void> {
    try { await this.pool.save(); } catch (err) { this.log.error({ err: errorMessage(err) }, 'cannot save VIP assignments'); }
  }

  /** a grace period runs out even when no render comes */
  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    const next = this.pool.nextExpiryIn();
    if (next === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const freed = this.pool.expire();
      // reported once the pool file says so, as after a view
      void this.save().then(() => { this.report(freed); this.schedule(); });
    }, next + 5);
    this.timer.unref();
  }
}
