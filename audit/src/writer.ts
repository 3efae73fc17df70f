// Appends audit entries to a Redis stream (XADD with MAXLEN ~ cap). Registry
// work never waits for Redis: entries queue in a bounded buffer while Redis is
// down and are flushed when it returns; what overflows is dropped and counted.
import { Redis } from 'ioredis';
import { errorMessage, redactUrl, type Logger } from '@gantry/core';
import { AUDIT_FIELDS, type AuditEntry } from './entry.ts';

export interface AuditWriterOptions {
  url: string;
  key: string;
  /** approximate maximum stream length (XADD MAXLEN ~) */
  maxLen: number;
  /** entries kept while Redis is unreachable */
  bufferSize: number;
  log: Logger;
  onDropped?: (n: number) => void;
  onWritten?: (n: number) => void;
}

export class AuditWriter {
  private readonly o: AuditWriterOptions;
  private readonly redis: Redis;
  private buffer: AuditEntry[] = [];
  private flushing = false;
  private dropped = 0;
  private closed = false;

  constructor(o: AuditWriterOptions) {
    this.o = o;
    this.redis = new Redis(o.url, {
      lazyConnect: false,
      enableOfflineQueue: false, // fail fast: our own buffer holds entries, not ioredis's
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(5000, 100 * 2 ** Math.min(times, 6)),
    });
    this.redis.on('error', (err) => o.log.debug({ err: errorMessage(err), redis: redactUrl(o.url) }, 'audit redis error'));
    this.redis.on('ready', () => { o.log.info({ redis: redactUrl(o.url) }, 'audit redis connected'); void this.flush(); });
  }

  get pending(): number {
    return this.buffer.length;
  }

  get droppedCount(): number {
    return this.dropped;
  }

  append(e: AuditEntry): void {
    if (this.closed) return;
    if (this.buffer.length >= this.o.bufferSize) {
      this.buffer.shift();
      this.dropped++;
      this.o.onDropped?.(1);
    }
    this.buffer.push(e);
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.redis.status !== 'ready') return;
    this.flushing = true;
    try {
      while (this.buffer.length && this.redis.status === 'ready') {
        const batch = this.buffer.slice(0, 100);
        const pipe = this.redis.pipeline();
        for (const e of batch) pipe.xadd(this.o.key, 'MAXLEN', '~', this.o.maxLen, '*', ...AUDIT_FIELDS.flatMap((f) => [f, e[f]]));
        const results = await pipe.exec();
        const failed = (results ?? []).findIndex(([err]) => err);
        const written = failed === -1 ? batch.length : failed;
        this.buffer.splice(0, written);
        this.o.onWritten?.(written);
        if (failed !== -1) break;
      }
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err), pending: this.buffer.length }, 'audit write failed; entries kept for later');
    } finally {
      this.flushing = false;
    }
  }

  /** Tries to write what is buffered (up to timeoutMs), then disconnects. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + timeoutMs;
    while (this.buffer.length && this.redis.status === 'ready' && Date.now() < deadline) {
      await this.flush();
      if (this.buffer.length) await new Promise((r) => setTimeout(r, 50));
    }
    this.redis.disconnect();
  }
}
