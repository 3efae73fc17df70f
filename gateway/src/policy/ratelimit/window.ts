// A fixed-window counter: at most `limit` requests a key a window. The Redis
// script and the local limiter count the same way, so a switch between them
// changes where the count is kept, not what it means.

export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** ms until the window ends (the count starts again) */
  resetMs: number;
  backend: 'redis' | 'local' | 'open' | 'closed';
}

/** One replica's own counts (Redis unreachable, or no Redis configured). */
export class LocalWindows {
  private readonly counts = new Map<string, { slot: number; n: number }>();
  private sweeps = 0;

  decide(key: string, limit: number, windowMs: number, now: number): RateDecision {
    const slot = Math.floor(now / windowMs);
    let c = this.counts.get(key);
    if (!c || c.slot !== slot) {
      c = { slot, n: 0 };
      this.counts.set(key, c);
      if (++this.sweeps % 1024 === 0) this.sweep(now, windowMs);
    }
    c.n++;
    const resetMs = (slot + 1) * windowMs - now;
    return c.n > limit
      ? { allowed: false, limit, remaining: 0, resetMs, backend: 'local' }
      : { allowed: true, limit, remaining: limit - c.n, resetMs, backend: 'local' };
  }

  private sweep(now: number, windowMs: number): void {
    const current = Math.floor(now / windowMs);
    for (const [k, c] of this.counts) if (c.slot < current - 1) this.counts.delete(k);
  }
}

/** HTTP headers of a decision: RateLimit-* (IETF draft) and, when refused, Retry-After. */
export function rateLimitHeaders(d: RateDecision, windowMs: number): Record<string, string> {
  const reset = Math.max(1, Math.ceil(d.resetMs / 1000));
  const h: Record<string, string> = {
    'ratelimit-limit': String(d.limit),
    'ratelimit-remaining': String(d.remaining),
    'ratelimit-reset': String(reset),
    'ratelimit-policy': `${d.limit};w=${Math.max(1, Math.round(windowMs / 1000))}`,
  };
  if (!d.allowed) h['retry-after'] = String(reset);
  return h;
}
