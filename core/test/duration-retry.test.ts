import test from 'ava';
import { parseDuration, formatDuration } from '../src/duration.ts';
import { Backoff, retry } from '../src/retry.ts';
import { nextIndex } from '../src/consul.ts';

test('durations as Consul writes them', (t) => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('5s'), 5000);
  t.is(parseDuration('1m'), 60_000);
  t.is(parseDuration('1m30s'), 90_000);
  t.is(parseDuration('1.5h'), 5_400_000);
  t.is(parseDuration('0'), 0);
  for (const bad of ['', '5', 's', '5x', '-1s', '1s ms']) {
    const err = t.throws(() => parseDuration(bad));
    t.is((err as { code?: string }).code, 'E_DURATION', bad);
  }
  t.is(formatDuration(90_000), '90s');
  t.is(formatDuration(120_000), '2m');
  t.is(formatDuration(250), '250ms');
});

test('backoff: full jitter below an exponentially growing, capped ceiling', (t) => {
  const top = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
  const delays = Array.from({ length: 8 }, () => top.next());
  t.deepEqual(delays, [99, 199, 399, 799, 999, 999, 999, 999]);
  const low = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
  t.is(low.next(), 0);
  top.reset();
  t.is(top.next(), 99);
});

test('retry: retries until success, gives up after attempts, respects retryable', async (t) => {
  let calls = 0;
  const v = await retry(async () => { if (++calls < 3) throw new Error('boom'); return 'ok'; }, { attempts: 5, baseMs: 1 });
  t.is(v, 'ok');
  t.is(calls, 3);
  calls = 0;
  await t.throwsAsync(retry(async () => { calls++; throw new Error('always'); }, { attempts: 4, baseMs: 1 }), { message: 'always' });
  t.is(calls, 4);
  calls = 0;
  await t.throwsAsync(retry(async () => { calls++; throw new Error('fatal'); }, { attempts: 4, baseMs: 1, retryable: () => false }));
  t.is(calls, 1);
});

test('blocking-query index: reset when it goes backwards, never 0', (t) => {
  t.is(nextIndex(undefined, '42'), '42');
  t.is(nextIndex('42', '43'), '43');
  t.is(nextIndex('42', '7'), '0');
  t.is(nextIndex('0', '0'), '1');
  t.is(nextIndex(undefined, undefined), '1');
  t.is(nextIndex('5', 'garbage'), '0');
});
