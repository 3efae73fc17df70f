// The blocking-query loop for one prefix, by Consul's rules ("Blocking
// Queries"): the first read and the first after an error are plain reads;
// then each read waits past the last X-Consul-Index (reset when it goes
// backwards, never 0), with a wait shortened by a random jitter and an HTTP
// timeout beyond it. Errors back off with full jitter; churn is rate-limited.
import { Backoff, formatDuration, nextIndex, sleep, type ConsulClient } from '@gantry/core';
import { fetchPrefix, type KvAnswer } from './kv.ts';
import type { TokenBucket } from './ratelimit.ts';
import type { Consistency } from './types.ts';

export interface WatcherOptions {
  consul: ConsulClient;
  prefix: string;
  consistency: Consistency;
  waitMs: number;
  /** a plain read's timeout, and the margin over the wait for a blocking one */
  timeoutMs: number;
  backoff: { baseMs: number; maxMs: number };
  rate: TokenBucket;
  signal: AbortSignal;
  random?: () => number;
  /** every answer, in order; the caller compares content */
  onAnswer(answer: KvAnswer): void;
  /** a failed read; the loop sleeps delayMs and reads again (a plain read) */
  onError(err: unknown, attempt: number, delayMs: number): void;
}

/** Consul adds up to wait/16 of its own jitter to a blocking query. */
export function blockingTimeout(waitMs: number, marginMs: number): number {
  return waitMs + Math.ceil(waitMs / 16) + marginMs;
}

function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err as { name?: string } | null)?.name === 'AbortError';
}

/** Runs until the signal aborts; never rejects. */
export async function runWatcher(o: WatcherOptions): Promise<void> {
  const random = o.random ?? Math.random;
  const backoff = new Backoff({ baseMs: o.backoff.baseMs, maxMs: o.backoff.maxMs, random });
  /** undefined: the next read is a plain one */
  let index: string | undefined;
  while (!o.signal.aborted) {
    try {
      let answer: KvAnswer;
      if (index === undefined) {
        answer = await fetchPrefix(o.consul, o.prefix, { consistency: o.consistency, timeoutMs: o.timeoutMs, signal: o.signal });
      } else {
        await o.rate.take(o.signal);
        const waitMs = Math.max(1, o.waitMs - Math.floor(random() * (o.waitMs / 16)));
        answer = await fetchPrefix(o.consul, o.prefix, {
          consistency: o.consistency,
          index,
          wait: formatDuration(waitMs),
          timeoutMs: blockingTimeout(waitMs, o.timeoutMs),
          signal: o.signal,
        });
      }
      backoff.reset();
      const next = nextIndex(index, answer.index);
      // '0' means the index went backwards (a new Consul, a snapshot restore): read again plainly
      index = next === '0' ? undefined : next;
      o.onAnswer(answer);
    } catch (err) {
      if (isAbort(err, o.signal)) return;
      // after an error the server may be another one with a lower index: read plainly
      index = undefined;
      const delay = backoff.next();
      o.onError(err, backoff.attempts, delay);
      try {
        await sleep(delay, o.signal);
      } catch {
        return;
      }
    }
  }
}
