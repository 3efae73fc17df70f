// The watch of one prefix: core's blocking query (index rules, no-known-leader
// answers refused — a stale read from a lagging server must not delete keys —,
// wait jitter, HTTP timeout beyond the wait, backoff with full jitter, a token
// bucket while values churn) with every answer handed over; the caller
// compares content.
import { runBlockingQuery, type ConsulClient } from '@gantry/core';
import { kvPath, kvQuery, toKvAnswer, type KvAnswer, type KvPair } from './kv.ts';
import type { Consistency } from './types.ts';

export interface WatcherOptions {
  consul: ConsulClient;
  prefix: string;
  consistency: Consistency;
  waitMs: number;
  /** a plain read's timeout, and the margin over the wait for a blocking one */
  timeoutMs: number;
  backoff: { baseMs: number; maxMs: number };
  rate: { perSecond: number; burst: number };
  signal: AbortSignal;
  random?: () => number;
  /** every answer, in order; the caller compares content */
  onAnswer(answer: KvAnswer): void;
  /** a failed read; the loop sleeps delayMs and reads again (a plain read) */
  onError(err: unknown, attempt: number, delayMs: number): void;
}

/** Runs until the signal aborts; never rejects. */
export function runWatcher(o: WatcherOptions): Promise<void> {
  return runBlockingQuery<KvPair[] | string>({
    consul: o.consul,
    path: kvPath(o.prefix),
    query: kvQuery(o.consistency),
    endpoint: `kv ${o.prefix}`,
    waitMs: o.waitMs,
    timeoutMs: o.timeoutMs,
    backoff: o.backoff,
    rate: o.rate,
    signal: o.signal,
    random: o.random,
    // a stale read may come from a follower still catching up after it found its leader again
    ...(o.consistency === 'stale' ? { behindGraceMs: 10_000 } : {}),
    notFound: () => [],
    deliver: 'every',
    onChange: (body, _index, answer) => o.onAnswer(toKvAnswer(o.prefix, body, answer.headers)),
    onError: (err, attempt, delayMs) => o.onError(err, attempt, delayMs),
  });
}
