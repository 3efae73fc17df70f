// When a failed attempt may go to another instance, and how many retries the
// gateway spends: a budget of `ratio` retries per request over a sliding window
// (plus `minPerSecond`), so a failing upstream never turns into a retry storm.
import type { Failure } from '../proxy/forward.ts';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export const isIdempotent = (method: string | undefined): boolean => IDEMPOTENT.has(method ?? '');

/**
 * Connect failures never reached the upstream: any method may go elsewhere (when
 * no body was sent). After the connection was made, only idempotent methods.
 */
export function retriable(method: string | undefined, failure: Failure, hasBody: boolean, responded: boolean): boolean {
  if (responded || hasBody) return false;
  if (failure === 'connect') return true;
  return isIdempotent(method) && (failure === 'reset' || failure === 'header-timeout');
}

export interface RetryBudgetOptions {
  /** retries allowed per request seen in the window */
  ratio: number;
  minPerSecond: number;
  windowMs: number;
}

/** Ten buckets over the window: requests and retries. */
export class RetryBudget {
  private readonly buckets: Array<{ at: number; requests: number; retries: number }>;
  private readonly bucketMs: number;
  private readonly o: RetryBudgetOptions;
  constructor(o: RetryBudgetOptions) {
    this.o = o;
    this.bucketMs = Math.max(1, Math.floor(o.windowMs / 10));
    this.buckets = Array.from({ length: 10 }, () => ({ at: 0, requests: 0, retries: 0 }));
  }
  private bucket(now: number): { at: number; requests: number; retries: number } {
    const slot = Math.floor(now / this.bucketMs);
    const b = this.buckets[slot % 10]!;
    if (b.at !== slot) { b.at = slot; b.requests = 0; b.retries = 0; }
    return b;
  }
  request(now: number): void {
    this.bucket(now).requests++;
  }
  /** takes one retry from the budget; false when it is spent */
  tryRetry(now: number): boolean {
    const oldest = Math.floor(now / this.bucketMs) - 9;
    let requests = 0;
    let retries = 0;
    for (const b of this.buckets) if (b.at >= oldest) { requests += b.requests; retries += b.retries; }
    const allowed = this.o.ratio * requests + this.o.minPerSecond * (this.o.windowMs / 1000);
    if (retries >= allowed) return false;
    this.bucket(now).retries++;
    return true;
  }
}
