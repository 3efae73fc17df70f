// The audit trail through Redis Sentinel: a real master, replica and three
// sentinels; the master is SIGKILLed while entries are being written, Sentinel
// promotes the replica, and every entry is in the stream exactly once (none
// lost, none duplicated) or counted as dropped. The password in the URL never
// reaches a log line.
import test from 'ava';
import { Writable } from 'node:stream';
import { createLogger } from '@gantry/core';
import { createRedis } from '@gantry/core/redis';
import { AuditWriter, AUDIT_FIELDS, entryFromFields, type AuditEntry } from '../../audit/src/index.ts';
import { startRedisSentinel } from '../harness/engines/redis-sentinel.ts';
import { manageEngines } from '../harness/ava.ts';
import { sleep, waitUntil } from '../harness/process.ts';

const track = manageEngines(test);
const PASSWORD = 'sentinel-audit-Secret-42';

const entry = (i: number): AuditEntry => {
  const e = Object.fromEntries(AUDIT_FIELDS.map((f) => [f, ''])) as unknown as AuditEntry;
  return { ...e, time: new Date().toISOString(), owner: 'registrator@test', action: 'register', service: 'web', instance: `web-${i}`, source: 'docker', origin: `c${i}`, host: 'host-a', reason: 'event', ok: 'true' };
};

test('audit through Sentinel: the master SIGKILLed mid-stream, the replica promoted, every entry in the stream once or counted as dropped; no password in the logs', async (t) => {
  const redis = await startRedisSentinel({ password: PASSWORD });
  track('redis-sentinel', redis);
  let logText = '';
  const log = createLogger({ component: 'audit-test', level: 'debug', destination: new Writable({ write(chunk: Buffer, _e, cb) { logText += chunk.toString(); cb(); } }) });
  let written = 0;
  let dropped = 0;
  const writer = new AuditWriter({ url: redis.url, key: 'gantry:audit', maxLen: 100_000, bufferSize: 100_000, log, onWritten: (n) => { written += n; }, onDropped: (n) => { dropped += n; } });
  const N = 400;
  const before = await redis.masterPort();
  let failover: Promise<{ failoverMs: number }> | undefined;
  for (let i = 0; i < N; i++) {
    writer.append(entry(i));
    if (i === 120) failover = redis.killMaster();
    await sleep(i % 10 === 0 ? 10 : 1);
  }
  const { failoverMs } = await failover!;
  const after = await redis.masterPort();
  t.not(after, before, 'Sentinel promoted the replica');
  t.log(`failover ${failoverMs} ms`);
  await waitUntil('every entry written', async () => writer.pending === 0, { timeoutMs: 60_000, intervalMs: 100 });
  await writer.close();

  const reader = createRedis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    await reader.connect();
    const stream = await reader.xrange('gantry:audit', '-', '+');
    const instances = stream.map(([, fields]) => entryFromFields(fields).instance);
    const counts = new Map<string, number>();
    for (const i of instances) counts.set(i, (counts.get(i) ?? 0) + 1);
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([i]) => i);
    const missing = Array.from({ length: N }, (_, i) => `web-${i}`).filter((i) => !counts.has(i));
    t.deepEqual(duplicated, [], 'no entry twice');
    t.is(missing.length, dropped, 'every entry missing from the stream was counted as dropped');
    t.is(written + dropped, N, 'written and dropped account for every entry');
    t.is(stream.length, written, 'the stream holds exactly what was counted written');
  } finally {
    reader.disconnect();
  }
  t.false(logText.includes(PASSWORD), 'the password never reaches a log line');
  t.true((logText.match(/audit redis connected/g) ?? []).length >= 2, 'the writer connected, then reconnected to the promoted master');
});
