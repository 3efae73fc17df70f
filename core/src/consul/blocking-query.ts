// The one Consul blocking query of Gantry (docs: "Blocking Queries"). Every
// loop that waits on Consul — the catalog watcher, the config client, the agent
// sink's watch of its records, the leader lock — asks through it, so they all
// follow the same rules:
//   - the index of the last answer is sent back; an index that goes backwards
//     starts again from 0, an index of 0 is never waited on (nextIndex);
//   - an answer given while the cluster has no known leader
//     (X-Consul-KnownLeader: false, a stale read from a lagging or cut-off
//     server) is refused: the caller keeps its last data (#1131: empty renders
//     during elections); with maxStaleMs, so is one whose server last heard
//     from the leader longer ago (X-Consul-LastContact);
//   - two queries start at least minSpacingMs apart (plus up to a quarter of it
//     again, so a burst of changes is read once), and a token bucket bounds the
//     rate while values churn;
//   - the wait is shortened by a random jitter of up to wait/16, so many
//     watchers do not renew together; the HTTP timeout is beyond the longest
//     wait (Consul adds up to wait/16 of its own) and one value for every
//     query: Node keeps the list of a cleared unref'd timer (a socket
//     timeout is one) until its duration has passed, one list per distinct
//     duration, so a timeout that followed the jittered wait left one list
//     (kept ~5.5 min at a 5 min wait) behind every answer;
//   - errors back off with full jitter, and the next query after one is a
//     plain read (the server may be another one with a lower index); with
//     behindGraceMs (stale reads), such a read whose index is below one
//     already delivered is refused as a lagging server's until it has stayed
//     below for that long (a cluster really reset stays below; a follower
//     that just found its leader catches up within it);
//   - an abort ends it at once and leaves no listener on the signal.
import type { IncomingHttpHeaders } from 'node:http';
import { GantryError } from '../errors.ts';
import { formatDuration } from '../duration.ts';
import { Backoff, sleep } from '../retry.ts';
import { TokenBucket } from '../rate-limit.ts';
import { nextIndex, type ConsulClient } from '../consul.ts';

export interface BlockingAnswer<T> {
  body: T;
  /** the index to wait past next (nextIndex of what Consul sent) */
  index: string;
  status: number;
  headers: IncomingHttpHeaders;
  /** the index moved since the last answer, or this is the first answer (or the first after an error) */
  moved: boolean;
}

export interface BlockingQueryOptions<T> {
  consul: ConsulClient;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** what the request counts as in metrics, logs and errors */
  endpoint: string;
  /** longest wait Consul is asked for */
  waitMs: number;
  /** minimum time between the starts of two queries (default 0) */
  minSpacingMs?: number;
  /** token bucket: at most perSecond queries a second while answers keep coming, bursts of `burst` */
  rate?: { perSecond: number; burst: number } | undefined;
  /** HTTP timeout of a plain read, and the margin over wait + wait/16 of a blocking one (default 15 s) */
  timeoutMs?: number;
  backoff?: { baseMs: number; maxMs: number } | undefined;
  /** refuse an answer whose server last heard from the leader longer ago than this (X-Consul-LastContact) */
  maxStaleMs?: number | undefined;
  /** after an error, refuse an answer behind the highest index delivered until it has been behind this long (default: never refused) */
  behindGraceMs?: number | undefined;
  signal: AbortSignal;
  /** a 404 means "nothing there" (a KV prefix, a lock key): deliver this value; without it a 404 is an error */
  notFound?: () => T;
  onRequest?(): void;
  /** a failed query; the loop sleeps delayMs, then reads again plainly */
  onError?(err: unknown, attempt: number, delayMs: number): void;
  random?: () => number;
  now?: () => number;
}

function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err as { name?: string } | null)?.name === 'AbortError';
}

/** Consul adds up to wait/16 of its own jitter to a blocking query: the HTTP timeout is beyond both. */
export function blockingTimeout(waitMs: number, marginMs: number): number {
  return waitMs + Math.ceil(waitMs / 16) + marginMs;
}

/**
 * One blocking query, asked again and again. `next()` resolves with the next
 * answer Consul gives (after the spacing, the rate limit and, on errors,
 * backoff); it rejects only when the signal aborts, or with the error itself
 * when `throwErrors` is set (after the backoff sleep, so a caller's retry loop
 * is spaced too).
 */
export class BlockingQuery<T> {
  private readonly o: BlockingQueryOptions<T>;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly backoff: Backoff;
  private readonly bucket: TokenBucket | undefined;
  private index: string | undefined;
  private lastRaw: string | undefined;
  private lastStart = -Infinity;
  private errorSince = true;
  /** the highest raw index delivered, and since when answers have been behind it */
  private highWater: bigint | undefined;
  private behindSince: number | undefined;
  /** requests sent (for tests and metrics) */
  requests = 0;

  constructor(o: BlockingQueryOptions<T>) {
    this.o = o;
    this.random = o.random ?? Math.random;
    this.now = o.now ?? (() => performance.now());
    this.backoff = new Backoff({ baseMs: o.backoff?.baseMs ?? 250, maxMs: o.backoff?.maxMs ?? 30_000, random: this.random });
    this.bucket = o.rate ? new TokenBucket(o.rate.perSecond, o.rate.burst, this.now) : undefined;
  }

  /** the index the next query waits past (undefined: a plain read) */
  get lastIndex(): string | undefined { return this.index; }

  /** forget the index: the next query is a plain read */
  reset(): void {
    this.index = undefined;
    this.errorSince = true;
  }

  async next(opts: { throwErrors?: boolean } = {}): Promise<BlockingAnswer<T>> {
    const o = this.o;
    for (;;) {
      if (o.signal.aborted) throw o.signal.reason as Error;
      try {
        return await this.once();
      } catch (err) {
        if (isAbort(err, o.signal)) throw (o.signal.reason ?? err) as Error;
        this.reset();
        const delay = this.backoff.next();
        o.onError?.(err, this.backoff.attempts, delay);
        await sleep(delay, o.signal);
        if (opts.throwErrors) throw err;
      }
    }
  }

  private async once(): Promise<BlockingAnswer<T>> {
    const o = this.o;
    const spacing = o.minSpacingMs ?? 0;
    const since = this.now() - this.lastStart;
    if (spacing > 0 && since < spacing) {
      // the spacing plus up to a quarter of it again, so a burst of changes is read once
      await sleep(spacing - since + this.random() * (spacing / 4), o.signal);
    }
    const blocking = this.index !== undefined && this.index !== '0';
    if (blocking && this.bucket) await this.bucket.take(o.signal);
    this.lastStart = this.now();
    const margin = o.timeoutMs ?? 15_000;
    const waitMs = Math.max(1, Math.round(o.waitMs - this.random() * (o.waitMs / 16)));
    this.requests++;
    o.onRequest?.();
    const res = await o.consul.request<T>('GET', o.path, {
      query: o.query,
      index: blocking ? this.index : undefined,
      wait: blocking ? formatDuration(waitMs) : undefined,
      signal: o.signal,
      timeoutMs: blocking ? blockingTimeout(o.waitMs, margin) : margin,
    });
    if (res.knownLeader === false) {
      throw new GantryError('E_NO_LEADER', `Consul ${o.endpoint}: answered without a known leader; keeping the last data`);
    }
    if (o.maxStaleMs !== undefined) {
      const contact = Number(res.headers['x-consul-lastcontact'] ?? 0);
      if (contact > o.maxStaleMs) {
        throw new GantryError('E_CONSUL_STALE', `Consul ${o.endpoint}: the server last heard from the leader ${contact} ms ago (more than ${o.maxStaleMs} ms); keeping the last data`);
      }
    }
    if (res.status === 404 && !o.notFound) throw new GantryError('E_CONSUL_HTTP', `Consul ${o.endpoint}: 404`);
    const raw = BigInt(/^\d+$/.test(res.index ?? '') ? res.index! : '0');
    if (o.behindGraceMs !== undefined && this.errorSince && this.highWater !== undefined && raw < this.highWater) {
      this.behindSince ??= this.now();
      if (this.now() - this.behindSince < o.behindGraceMs) {
        throw new GantryError('E_CONSUL_BEHIND', `Consul ${o.endpoint}: answered at index ${raw}, behind ${this.highWater} already read (a lagging server); keeping the last data`);
      }
    }
    this.behindSince = undefined;
    this.highWater = raw;
    const body = res.status === 404 ? o.notFound!() : res.body;
    // after an error the data is delivered even at the same index: it may be another agent's
    const moved = this.errorSince || res.index !== this.lastRaw;
    this.index = nextIndex(this.index, res.index);
    this.lastRaw = res.index ?? this.lastRaw ?? '0';
    this.errorSince = false;
    this.backoff.reset();
    return { body, index: this.index, status: res.status, headers: res.headers, moved };
  }
}

export interface RunBlockingQueryOptions<T> extends BlockingQueryOptions<T> {
  /** 'moved' (default): only answers whose index moved (and the first); 'every': each answer */
  deliver?: 'moved' | 'every';
  /** awaited before the next query */
  onChange(body: T, index: string, answer: BlockingAnswer<T>): void | Promise<void>;
}

/** Runs until the signal aborts; never rejects (Consul errors are reported through onError and retried). */
export async function runBlockingQuery<T>(o: RunBlockingQueryOptions<T>): Promise<void> {
  const q = new BlockingQuery<T>(o);
  const failed = new Backoff({ baseMs: o.backoff?.baseMs ?? 250, maxMs: o.backoff?.maxMs ?? 30_000, random: o.random });
  while (!o.signal.aborted) {
    let a: BlockingAnswer<T>;
    try {
      a = await q.next();
    } catch {
      return; // only an abort ends next()
    }
    if (!a.moved && o.deliver !== 'every') continue;
    try {
      await o.onChange(a.body, a.index, a);
      failed.reset();
    } catch (err) {
      if (o.signal.aborted) return;
      // the answer could not be used: read it again (plainly), after a backoff
      q.reset();
      const delay = failed.next();
      o.onError?.(err, failed.attempts, delay);
      try { await sleep(delay, o.signal); } catch { return; }
    }
  }
}
