// Appends audit entries to a Redis stream (XADD with MAXLEN ~ cap). Registry
// work never waits for Redis: entries queue in a bounded buffer while Redis is
// down or slow and are flushed when it answers; what overflows is dropped and
// counted.
//
// Exactly once: every appended entry ends either in the stream once or in the
// dropped count once, never both, never neither (closing with entries still
// waiting counts them as dropped). To keep that promise:
// - a batch being written is moved out of the evictable queue: eviction only
//   drops entries that were never sent (the oldest first);
// - Redis answering an error for one XADD means it was not written: the entry
//   goes back to the front of the queue;
// - a connection lost with a batch in flight leaves it unknown which XADDs ran.
//   Every entry carries this writer's id and a sequence number; before sending
//   anything else, the writer reads the stream from a point before that batch
//   and counts what it finds as written, re-queuing only the rest. Unconfirmed
//   entries are never evicted (at most one batch).
// ioredis neither resends nor retries commands itself (that would duplicate).
// Through Sentinel (redis+sentinel://) a batch counts as written once the
// replica has it too (WAIT 1): when the connection goes before WAIT answers,
// the batch is unconfirmed as above, so a master killed before replicating it
// loses nothing — the promoted replica is checked and the rest is resent.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { errorMessage, redactUrl, parseRedisUrl, type Logger } from '@gantry/core';
import { createRedis } from '@gantry/core/redis';
import { AUDIT_FIELDS, type AuditEntry } from './entry.ts';

export interface AuditWriterOptions {
  url: string;
  key: string;
  /** approximate maximum stream length (XADD MAXLEN ~) */
  maxLen: number;
  /** entries kept while Redis is unreachable or slow (in flight included) */
  bufferSize: number;
  log: Logger;
  /** XADDs a round trip (default 100) */
  batchSize?: number;
  /** called with the entries dropped (the oldest never sent first) */
  onDropped?: (n: number, entries: readonly AuditEntry[]) => void;
  onWritten?: (n: number) => void;
}

/** Stream fields naming the writer and the entry's place in its sequence. */
export const WRITER_FIELD = 'wid';
export const SEQ_FIELD = 'seq';

interface Queued { seq: number; e: AuditEntry }

export class AuditWriter {
  readonly id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private readonly o: AuditWriterOptions;
  private readonly redis: Redis;
  private readonly batchSize: number;
  private queue: Queued[] = [];
  private inflight: Queued[] = [];
  /** a batch whose connection died before the answer: written or not, unknown */
  private unconfirmed: { entries: Queued[]; from: string } | undefined;
  private seq = 0;
  private flushing = false;
  private dropped = 0;
  private written = 0;
  private closed = false;
  /** stream id no entry of ours sent on the current connection can precede */
  private floor: string | undefined;
  private lastId: string | undefined;
  /** through Sentinel: a batch is confirmed by the replica too */
  private readonly replicated: boolean;

  constructor(o: AuditWriterOptions) {
    this.o = o;
    this.batchSize = Math.max(1, Math.min(o.batchSize ?? 100, o.bufferSize));
    this.replicated = parseRedisUrl(o.url).kind === 'sentinel';
    this.redis = createRedis(o.url, {
      lazyConnect: false,
      enableOfflineQueue: false, // fail fast: our own buffer holds entries, not ioredis's
      maxRetriesPerRequest: 0, // a lost connection fails what was in flight at once…
      autoResendUnfulfilledCommands: false, // …and ioredis does not send it twice
      retryStrategy: (times) => Math.min(5000, 100 * 2 ** Math.min(times, 6)),
    });
    this.redis.on('error', (err) => o.log.debug({ err: errorMessage(err), redis: redactUrl(o.url) }, 'audit redis error'));
    this.redis.on('close', () => { this.floor = undefined; });
    this.redis.on('ready', () => { o.log.info({ redis: redactUrl(o.url) }, 'audit redis connected'); void this.onReady(); });
  }

  /** entries not yet known to be in the stream */
  get pending(): number {
    return this.queue.length + this.inflight.length + (this.unconfirmed?.entries.length ?? 0);
  }

  /** connected to Redis and ready to write */
  get connected(): boolean {
    return this.redis.status === 'ready' && this.floor !== undefined;
  }

  get droppedCount(): number {
    return this.dropped;
  }

  get writtenCount(): number {
    return this.written;
  }

  append(e: AuditEntry): void {
    if (this.closed) return;
    const entry = { seq: this.seq++, e };
    if (this.queue.length + this.inflight.length >= this.o.bufferSize) {
      // the oldest never sent goes; when every kept entry is in flight, the new one
      const gone = this.queue.length ? this.queue.shift()! : entry;
      if (gone !== entry) this.queue.push(entry);
      this.drop([gone]);
    } else {
      this.queue.push(entry);
    }
    void this.flush();
  }

  private drop(gone: Queued[]): void {
    if (!gone.length) return;
    this.dropped += gone.length;
    this.o.onDropped?.(gone.length, gone.map((q) => q.e));
  }

  private wrote(n: number): void {
    if (!n) return;
    this.written += n;
    this.o.onWritten?.(n);
  }

  private async onReady(): Promise<void> {
    try {
      // Redis's own clock: every XADD after this gets a larger id
      const [sec, usec] = await this.redis.time();
      this.floor = `${Number(sec) * 1000 + Math.floor(Number(usec) / 1000)}-0`;
    } catch (err) {
      this.o.log.debug({ err: errorMessage(err) }, 'audit redis TIME failed');
      return;
    }
    await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.redis.status !== 'ready' || !this.floor) return;
    this.flushing = true;
    try {
      if (this.unconfirmed) await this.confirm(this.unconfirmed);
      while (this.queue.length && this.redis.status === 'ready' && !this.unconfirmed) await this.writeBatch();
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err), pending: this.pending }, 'audit write failed; entries kept for later');
    } finally {
      this.flushing = false;
    }
  }

  private async writeBatch(): Promise<void> {
    const from = this.lastId ?? this.floor!;
    this.inflight = this.queue.splice(0, this.batchSize);
    const pipe = this.redis.pipeline();
    for (const { seq, e } of this.inflight) {
      pipe.xadd(this.o.key, 'MAXLEN', '~', this.o.maxLen, '*', ...AUDIT_FIELDS.flatMap((f) => [f, e[f] ?? '']), WRITER_FIELD, this.id, SEQ_FIELD, String(seq));
    }
    let results: Array<[Error | null, unknown]>;
    try {
      results = (await pipe.exec()) ?? [];
    } catch (err) {
      results = this.inflight.map(() => [err instanceof Error ? err : new Error(String(err)), null]);
    }
    if (this.replicated && results.some(([err]) => !err)) {
      // WAIT answering (even 0 replicas in time) keeps the batch written; the connection
      // going first makes what Redis acknowledged unknown: confirmed against the stream later
      const lost = await this.redis.wait(1, 1000).then(() => undefined, (err: unknown) => new Error(`WAIT: ${errorMessage(err)}`));
      if (lost) results = results.map(([err, id]) => (err ? [err, id] : [lost, null]));
    }
    const refused: Queued[] = [];
    const unknown: Queued[] = [];
    let ok = 0;
    this.inflight.forEach((q, i) => {
      const [err, id] = results[i] ?? [new Error('no reply'), null];
      if (!err) {
        ok++;
        if (typeof id === 'string') this.lastId = id;
      } else if (err.name === 'ReplyError') refused.push(q); // Redis answered: not written
      else unknown.push(q); // the connection went: written or not, unknown
    });
    this.inflight = [];
    this.wrote(ok);
    if (refused.length) {
      this.requeue(refused);
      this.o.log.warn({ refused: refused.length, err: errorMessage(results.find(([e]) => e?.name === 'ReplyError')?.[0]) }, 'audit entries refused by Redis; kept for later');
    }
    if (unknown.length) {
      const prev = this.unconfirmed;
      this.unconfirmed = { entries: [...(prev?.entries ?? []), ...unknown], from: prev ? minId(prev.from, from) : from };
    }
    if (refused.length || unknown.length) throw new Error(`${refused.length + unknown.length} audit entries not acknowledged`);
  }

  /** Counts what the stream holds of a batch lost in flight; re-queues the rest. */
  private async confirm(u: { entries: Queued[]; from: string }): Promise<void> {
    const wanted = new Map(u.entries.map((q) => [String(q.seq), q]));
    let from = u.from;
    let found = 0;
    for (;;) {
      const page = await this.redis.xrange(this.o.key, from, '+', 'COUNT', 1000);
      for (const [id, fields] of page) {
        let wid = '';
        let seq = '';
        for (let i = 0; i + 1 < fields.length; i += 2) {
          if (fields[i] === WRITER_FIELD) wid = fields[i + 1]!;
          else if (fields[i] === SEQ_FIELD) seq = fields[i + 1]!;
        }
        if (wid === this.id && wanted.delete(seq)) {
          found++;
          this.lastId = id;
        }
      }
      if (page.length < 1000 || wanted.size === 0) break;
      from = `(${page[page.length - 1]![0]}`;
    }
    this.unconfirmed = undefined;
    this.wrote(found);
    this.requeue([...wanted.values()]);
    this.o.log.info({ confirmed: found, resent: wanted.size }, 'audit batch lost in flight: confirmed against the stream');
  }

  /** Puts unwritten entries back at the front; the oldest beyond the bound are dropped. */
  private requeue(entries: Queued[]): void {
    this.queue = [...entries, ...this.queue].sort((a, b) => a.seq - b.seq);
    const over = this.queue.length + this.inflight.length - this.o.bufferSize;
    if (over > 0) this.drop(this.queue.splice(0, over));
  }

  /**
   * Tries to write what is buffered (up to timeoutMs), then disconnects. What
   * is still waiting is counted as dropped; a batch lost in flight that could not
   * be confirmed is logged as unconfirmed.
   */
  async close(timeoutMs = 2000): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + timeoutMs;
    while ((this.queue.length || this.unconfirmed) && Date.now() < deadline) {
      await this.flush();
      if (this.queue.length || this.unconfirmed) await new Promise((r) => setTimeout(r, 50));
    }
    if (this.queue.length) {
      this.o.log.warn({ dropped: this.queue.length }, 'audit entries still waiting at close: dropped');
      this.drop(this.queue);
      this.queue = [];
    }
    if (this.unconfirmed) this.o.log.warn({ unconfirmed: this.unconfirmed.entries.length }, 'audit entries lost in flight at close: written or not, unknown');
    this.redis.disconnect();
  }
}

function minId(a: string, b: string): string {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs) ? a : b;
}
