// core's blocking query against a real Consul: spacing and the token bucket
// bound the requests while a key churns, the last value always arrives, the
// wait is jittered below what was asked, and an abort ends it at once leaving
// the signal with the listeners it had.
import test from 'ava';
import { getEventListeners } from 'node:events';
import { BlockingQuery, createConsul, runBlockingQuery, type RequestOptions } from '../src/index.ts';
import { blockingTimeout } from '../src/consul/blocking-query.ts';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { kvPut } from '../../test/harness/consul-catalog.ts';

const track = manageEngines(test);

test('while a key churns: requests at most burst + rate × time, starts at least minSpacing apart, the last value arrives', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  const real = createConsul({ addr: consul.addr });
  const starts: number[] = [];
  const waits: string[] = [];
  const timeouts = new Set<number | undefined>();
  const counting = { ...real, api: real.api, request: <T>(m: string, p: string, o?: RequestOptions) => { starts.push(performance.now()); if (o?.wait) { waits.push(o.wait); timeouts.add(o.timeoutMs); } return real.request<T>(m, p, o); } };
  await kvPut(consul.addr, 'bq/n', '0');
  const ac = new AbortController();
  const seen: string[] = [];
  const loop = runBlockingQuery<Array<{ Value: string }>>({
    consul: counting, path: '/v1/kv/bq/n', endpoint: 'test', waitMs: 10_000, minSpacingMs: 40, rate: { perSecond: 5, burst: 2 }, signal: ac.signal,
    onChange: (body) => { seen.push(Buffer.from(body[0]!.Value, 'base64').toString()); },
  });
  try {
    const t0 = performance.now();
    let puts = 0;
    while (puts < 40 || performance.now() - t0 < 1500) await kvPut(consul.addr, 'bq/n', String(++puts));
    const last = String(puts);
    const deadline = Date.now() + 20_000;
    while (seen.at(-1) !== last && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.is(seen.at(-1), last, 'the last value arrives');
    const elapsedS = (performance.now() - t0) / 1000;
    const sent = starts.filter((s) => s >= t0).length;
    t.true(sent <= 2 + Math.ceil(5 * elapsedS) + 1, `${sent} requests for ${puts} changes in ${elapsedS.toFixed(2)} s`);
    for (let i = 1; i < starts.length; i++) t.true(starts[i]! - starts[i - 1]! >= 39, `requests ${i - 1} and ${i} ${Math.round(starts[i]! - starts[i - 1]!)} ms apart`);
    // the wait asked of Consul is jittered below the configured one (by up to 1/16)
    for (const w of waits) t.regex(w, /^\d+(\.\d+)?(ms|s)$/);
    t.true(waits.length > 1);
    t.true(new Set(waits).size > 1, `jittered waits: ${waits.join(' ')}`);
    // ... while the HTTP timeout is one value, beyond the longest wait Consul may take: Node keeps a
    // cleared unref'd timer's list (a socket timeout's) until its duration has passed, one per value
    t.deepEqual([...timeouts], [blockingTimeout(10_000, 15_000)]);
  } finally {
    ac.abort();
    await loop;
    real.close();
  }
});

test('an abort ends a waiting blocking query at once and leaves the signal with the listeners it had', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  const c = createConsul({ addr: consul.addr });
  await kvPut(consul.addr, 'bq/k', 'v');
  const ac = new AbortController();
  const before = getEventListeners(ac.signal, 'abort').length;
  const q = new BlockingQuery<unknown>({ consul: c, path: '/v1/kv/bq/k', endpoint: 'test', waitMs: 60_000, minSpacingMs: 5, signal: ac.signal });
  // many answers (each write wakes it), then one that waits
  for (let i = 0; i < 50; i++) {
    const next = q.next();
    await kvPut(consul.addr, 'bq/k', `v${i}`);
    await next;
  }
  t.true(getEventListeners(ac.signal, 'abort').length <= before + 1, 'no listener piles up across answers');
  const waiting = q.next(); // blocks: nothing changes
  await new Promise((r) => setTimeout(r, 200));
  ac.abort(new Error('stop'));
  // rejected with the abort's reason: ended by the abort, not by Consul's 60 s answer
  await t.throwsAsync(waiting, { message: 'stop' });
  await new Promise((r) => setImmediate(r));
  t.is(getEventListeners(ac.signal, 'abort').length, before, 'every listener it added is gone');
  c.close();
});
