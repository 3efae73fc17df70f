// One Consul blocking query, run in a loop by Consul's rules (docs: "Blocking
// Queries"): the index from the last answer is sent back, an index that goes
// backwards starts again from 0 (core's nextIndex), two queries to the same
// endpoint are at least minSpacing apart, the wait is jittered so many
// templaters do not renew together, errors back off with full jitter, and an
// answer given while the cluster has no known leader is not trusted (#1131:
// empty renders during elections).
import { GantryError } from '../errors.ts';
import { formatDuration } from '../duration.ts';
import { Backoff, sleep } from '../retry.ts';
import { nextIndex, type ConsulClient } from '../consul.ts';

export interface BlockingQueryOptions<T> {
  consul: ConsulClient;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** what the request counts as in metrics and logs */
  endpoint: string;
  /** longest wait Consul is asked for (it adds up to wait/16 of its own jitter) */
  waitMs: number;
  /** minimum time between the starts of two queries */
  minSpacingMs: number;
  backoff?: { baseMs: number; maxMs: number };
  signal: AbortSignal;
  /** a 404 means "nothing there" (KV prefix): deliver this value */
  notFound?: () => T;
  /** called with each answer whose index moved (and the first); awaited before the next query */
  onChange(body: T, index: string): void | Promise<void>;
  onError?(err: unknown, attempt: number, delayMs: number): void;
  /** every request sent (for metrics) */
  onRequest?(): void;
  random?: () => number;
  now?: () => number;
}

/** Runs until the signal aborts; never throws for Consul errors (they are reported and retried). */
export async function runBlockingQuery<T>(o: BlockingQueryOptions<T>): Promise<void> {
  const random = o.random ?? Math.random;
  const now = o.now ?? Date.now;
  const backoff = new Backoff({ baseMs: o.backoff?.baseMs ?? 250, maxMs: o.backoff?.maxMs ?? 30_000, random });
  let index: string | undefined;
  let lastRaw: string | undefined;
  let lastStart = -Infinity;
  while (!o.signal.aborted) {
    const since = now() - lastStart;
    if (since < o.minSpacingMs) {
      // spacing plus up to a quarter of it again, so a burst of changes is batched
      const delay = o.minSpacingMs - since + random() * (o.minSpacingMs / 4);
      try { await sleep(delay, o.signal); } catch { return; }
    }
    lastStart = now();
    const waitMs = Math.max(1000, Math.round(o.waitMs - random() * (o.waitMs / 16)));
    try {
      o.onRequest?.();
      const res = await o.consul.request<T>('GET', o.path, {
        query: o.query,
        index: index ?? undefined,
        wait: index === undefined ? undefined : formatDuration(waitMs),
        signal: o.signal,
        timeoutMs: waitMs + waitMs / 16 + 15_000,
      });
      if (res.knownLeader === false) {
        throw new GantryError('E_NO_LEADER', `Consul ${o.endpoint}: answered without a known leader; keeping the last data`);
      }
      if (res.status === 404 && !o.notFound) {
        throw new GantryError('E_CONSUL_HTTP', `Consul ${o.endpoint}: 404`);
      }
      const body = res.status === 404 ? o.notFound!() : res.body;
      // after an error the data is delivered even at the same index: it may be another agent's
      const moved = lastRaw === undefined || res.index !== lastRaw || index === undefined;
      index = nextIndex(index, res.index);
      lastRaw = res.index ?? lastRaw ?? '0';
      backoff.reset();
      if (moved) await o.onChange(body, index);
    } catch (err) {
      if (o.signal.aborted) return;
      // the agent may have restarted with a lower index: a blocking query with our old index would
      // wait its whole wait time there, so the next query asks without one (and nextIndex resets)
      index = undefined;
      const delay = backoff.next();
      o.onError?.(err, backoff.attempts, delay);
      try { await sleep(delay, o.signal); } catch { return; }
    }
  }
}
