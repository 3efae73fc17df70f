// The audit writer against a real Redis made slow (CLIENT PAUSE) or cut off
// mid-reply: every appended entry ends in the stream once or in the dropped
// count once — never both, never neither, never twice.
import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { createLogger } from '@gantry/core';
import { AuditWriter, WRITER_FIELD, SEQ_FIELD } from '../src/writer.ts';
import type { AuditEntry } from '../src/entry.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil, sleep, freePort } from '../../test/harness/process.ts';

const addEngine = manageEngines(test);
let redis: RedisEngine;
let admin: Redis;
const lines: string[] = [];
const log = createLogger({ component: 'audit-test', level: 'debug', destination: new Writable({ write(c: Buffer, _e, cb) { lines.push(c.toString()); cb(); } }) });

test.before(async () => {
  redis = await startRedis();
  addEngine('redis', redis);
  admin = new Redis(redis.url);
});
test.after.always(() => admin?.disconnect());

function entry(i: number): AuditEntry {
  return { time: new Date().toISOString(), owner: 'o', action: 'register', service: `svc-${i}`, instance: `i-${i}`, source: 'docker', origin: 'c', originName: 'n', image: '', host: 'h', reason: 'event', ok: 'true', error: '', status: '' };
}

/** seq → number of times the writer's entries appear in the stream */
async function seqsInStream(key: string, writer: AuditWriter): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const [, fields] of await admin.xrange(key, '-', '+')) {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
    if (f.get(WRITER_FIELD) !== writer.id) continue;
    const seq = Number(f.get(SEQ_FIELD));
    out.set(seq, (out.get(seq) ?? 0) + 1);
  }
  return out;
}

/** entries are numbered by the test (service svc-<i>), in append order = the writer's seq */
function droppedRecorder(): { dropped: number[]; onDropped: (n: number, entries: readonly AuditEntry[]) => void } {
  const dropped: number[] = [];
  return { dropped, onDropped: (_n, entries) => { for (const e of entries) dropped.push(Number(e.service.slice(4))); } };
}

function assertExactlyOnce(t: ExecutionContext, seqs: Map<number, number>, writer: AuditWriter, appended: number, dropped: number[]): void {
  const twice = [...seqs].filter(([, n]) => n > 1).map(([s]) => s);
  t.deepEqual(twice, [], 'no entry is in the stream twice');
  t.deepEqual(dropped.filter((s) => seqs.has(s)), [], 'no entry is both in the stream and counted dropped');
  t.is(new Set(dropped).size, dropped.length, 'no entry is counted dropped twice');
  const missing = Array.from({ length: appended }, (_, i) => i).filter((s) => !seqs.has(s) && !dropped.includes(s));
  t.deepEqual(missing, [], 'every entry is in the stream or counted dropped');
  t.is(dropped.length, writer.droppedCount);
  t.true([...seqs.keys()].every((s) => s >= 0 && s < appended), 'the stream holds only entries we appended');
  t.is(seqs.size + writer.droppedCount, appended, `in the stream (${seqs.size}) + dropped (${writer.droppedCount}) = appended (${appended})`);
  t.is(writer.writtenCount, seqs.size, 'the written count matches the stream');
  t.is(writer.pending, 0);
}

test.serial('Redis paused while entries overflow the buffer: each entry in the stream or counted dropped, exactly once', async (t) => {
  const key = 'audit:pause';
  const rec = droppedRecorder();
  const w = new AuditWriter({ url: redis.url, key, maxLen: 100_000, bufferSize: 20, batchSize: 8, log, onDropped: rec.onDropped });
  t.teardown(() => w.close(100));
  let appended = 0;
  w.append(entry(appended++));
  await waitUntil('first entry written', async () => w.writtenCount === 1, { timeoutMs: 10_000 });

  for (let round = 0; round < 3; round++) {
    // writes block on the server for 1.5 s; a batch is in flight meanwhile
    await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
    for (let i = 0; i < 60; i++) {
      w.append(entry(appended++));
      if (i % 7 === 0) await sleep(20); // new batches start while older ones wait
    }
    t.true(w.pending <= 20, `the buffer stays bounded (pending ${w.pending})`);
    await waitUntil('buffer drained', async () => w.pending === 0, { timeoutMs: 20_000 });
  }
  t.true(w.droppedCount > 0, 'the buffer overflowed');
  assertExactlyOnce(t, await seqsInStream(key, w), w, appended, rec.dropped);
});

test.serial('connection cut after Redis ran the XADDs but before the replies: the batch is confirmed from the stream, not sent twice', async (t) => {
  // a TCP relay in front of the real Redis that can swallow the replies to XADDs
  const port = await freePort();
  let swallowXadd = false;
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    const server = net.connect({ host: '127.0.0.1', port: redis.port });
    let mute = false;
    sockets.add(client).add(server);
    client.on('data', (d) => { if (swallowXadd && /xadd/i.test(d.toString('latin1'))) mute = true; server.write(d); });
    server.on('data', (d) => { if (!mute) client.write(d); });
    const end = (): void => { client.destroy(); server.destroy(); sockets.delete(client); sockets.delete(server); };
    client.on('close', end).on('error', end);
    server.on('close', end).on('error', end);
  });
  const cut = (): void => { for (const s of sockets) s.destroy(); };
  await new Promise<void>((r) => relay.listen(port, '127.0.0.1', r));
  t.teardown(() => { cut(); relay.close(); });

  const key = 'audit:cut';
  const rec = droppedRecorder();
  const w = new AuditWriter({ url: `redis://127.0.0.1:${port}`, key, maxLen: 100_000, bufferSize: 50, batchSize: 10, log, onDropped: rec.onDropped });
  t.teardown(() => w.close(100));
  let appended = 0;
  w.append(entry(appended++));
  await waitUntil('first entry written', async () => w.writtenCount === 1, { timeoutMs: 10_000 });

  // cut, and queue a batch while the writer reconnects; its XADDs will run but
  // their replies never arrive
  swallowXadd = true;
  cut();
  await waitUntil('writer disconnected', async () => !w.connected, { timeoutMs: 10_000 });
  for (let i = 0; i < 10; i++) w.append(entry(appended++));
  await waitUntil('XADDs ran on the server', async () => (await admin.xlen(key)) === 11, { timeoutMs: 20_000 });
  t.is(w.writtenCount, 1, 'no reply reached the writer');
  swallowXadd = false;
  cut();
  for (let i = 0; i < 5; i++) w.append(entry(appended++));
  await waitUntil('buffer drained after reconnect', async () => w.pending === 0, { timeoutMs: 20_000 });
  const seqs = await seqsInStream(key, w);
  t.is(seqs.size, appended, 'every entry is in the stream');
  assertExactlyOnce(t, seqs, w, appended, rec.dropped);
  t.true(lines.some((l) => l.includes('confirmed against the stream') && l.includes('"confirmed":10')), 'the lost batch was confirmed from the stream');
});
