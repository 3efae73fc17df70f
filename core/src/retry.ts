// Exponential backoff with full jitter (AWS architecture blog): sleep a random
// time in [0, min(cap, base * 2^attempt)]. Written once, used by every loop.

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  /** a source of randomness in [0,1), replaceable in tests */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 100;
    this.maxMs = opts.maxMs ?? 30_000;
    this.random = opts.random ?? Math.random;
  }
  /** the next delay, growing with each failure */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }
  get attempts(): number {
    return this.attempt;
  }
  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after ms, or rejects with the signal's reason when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => { clearTimeout(timer); reject(signal!.reason as Error); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryOptions extends BackoffOptions {
  /** attempts in all, including the first; Infinity retries until aborted */
  attempts?: number;
  signal?: AbortSignal;
  /** return false to stop retrying this error */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Runs fn until it succeeds, with backoff and full jitter between tries. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const backoff = new Backoff(opts);
  const attempts = opts.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || opts.signal?.aborted || (opts.retryable && !opts.retryable(err))) throw err;
      const delay = backoff.next();
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
}
