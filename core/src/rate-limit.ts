// A token bucket for blocking queries (core/src/consul/blocking-query.ts): while values churn, a prefix is read at
// most `perSecond` times a second; after a quiet period the bucket is full, so
// the first change is never held back.
import { sleep } from './retry.ts';

export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(perSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.perSecond = perSecond;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
    this.now = now;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
  }

  /** ms to wait before a token is there (0: one is there now) */
  delay(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }

  /** Takes a token, waiting for one when the bucket is empty; rejects when the signal aborts. */
  async take(signal: AbortSignal): Promise<void> {
    for (let wait = this.delay(); wait > 0; wait = this.delay()) await sleep(wait, signal);
    this.tokens -= 1;
  }
}
