// Reads the audit stream back: `gantry audit log [--since --service --json]`.
import { createRedis } from '@gantry/core/redis';
import { entryFromFields, type AuditEntry } from './entry.ts';

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
      const page = await redis.xrange(o.key, from, '+', 'COUNT', 500);
      for (const [id, fields] of page) {
        const e = entryFromFields(fields);
        if (!o.service || e.service === o.service) out.push({ id, ...e });
      }
      if (page.length < 500) break;
      from = `(${page[page.length - 1]![0]}`;
    }
    return out.slice(-limit);
  } finally {
    redis.disconnect();
  }
}
