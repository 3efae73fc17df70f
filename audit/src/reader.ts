// Reads the audit stream back: `gantry audit log [--since --service --json]`.
import { createRedis } from '@gantry/core/redis';
import { entryFromFields, type AuditEntry } from './entry.ts';

/** entries a round trip: the drift report reads tens of thousands */
const PAGE = 5000;

export interface ReadOptions {
  url: string;
  key: string;
  /** only entries at or after this time */
  since?: Date;
  service?: string;
  limit?: number;
}

export async function readAudit(o: ReadOptions): Promise<Array<AuditEntry & { id: string }>> {
  const redis = createRedis(o.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    const start = o.since ? String(o.since.getTime()) : '-';
    const out: Array<AuditEntry & { id: string }> = [];
    let from = start;
    const limit = o.limit ?? 1000;
    for (;;) {
      const page = await redis.xrange(o.key, from, '+', 'COUNT', PAGE);
      for (const [id, fields] of page) {
        const e = entryFromFields(fields, id);
        if (!o.service || e.service === o.service) out.push(e);
      }
      if (page.length < PAGE) break;
      from = `(${page[page.length - 1]![0]}`;
    }
    return out.length > limit ? out.slice(-limit) : out;
  } finally {
    redis.disconnect();
  }
}

/**
 * Streams entries appended after `after` (default: from now) until aborted:
 * XREAD BLOCK on its own connection, reconnecting with backoff.
 */
export async function followAudit(o: ReadOptions & { after?: string }, onEntry: (e: AuditEntry & { id: string }) => void, signal: AbortSignal): Promise<void> {
  const redis = createRedis(o.url, { lazyConnect: true, maxRetriesPerRequest: null, enableOfflineQueue: true });
  redis.on('error', () => undefined); // reconnects on its own; the loop reports
  const stop = (): void => redis.disconnect();
  signal.addEventListener('abort', stop, { once: true });
  try {
    await redis.connect();
    let last = o.after ?? '$';
    if (last === '$') {
      // resolve "now" to an id, so entries between two reads are never skipped
      const top = await redis.xrevrange(o.key, '+', '-', 'COUNT', 1);
      last = top[0]?.[0] ?? '0-0';
    }
    while (!signal.aborted) {
      const res = await redis.xread('COUNT', 500, 'BLOCK', 5000, 'STREAMS', o.key, last).catch((err: unknown) => {
        if (signal.aborted) return null;
        throw err;
      });
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          const e = entryFromFields(fields);
          if (!o.service || e.service === o.service) onEntry({ id, ...e });
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', stop);
    redis.disconnect();
  }
}
