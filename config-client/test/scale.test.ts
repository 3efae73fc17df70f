// Keys with unusual characters, 512 KB values, 10,000 keys, and the rate limit
// while a value churns, against a real Consul.
import test from 'ava';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { ConfigClient, type ChangeEvent } from '../src/index.ts';
import { captureLogs, kvClient, nextEvent } from './helpers.ts';

const track = manageEngines(test);
let engine: ConsulEngine;
const kv = kvClient(() => engine.addr);
const quiet = () => captureLogs('warn').logger;

test.before(async () => {
  engine = await startConsul();
  track('consul', engine);
});

const UNUSUAL = [
  'with space', 'percent%20sign', 'question?mark', 'hash#tag', 'amp&and=eq', 'plus+sign', 'ünïcödé/ключ/键', 'emoji-🚀',
  '__proto__', 'constructor', 'quote"s\'', 'back\\slash', 'semi;colon', 'tab\there', 'a..b', '.hidden', 'dots/./x',
];

test('keys with unusual characters, in the key and in the prefix, read and change', async (t) => {
  const prefix = 'odd prefix/ä ö/';
  await kv.txn(UNUSUAL.map((k, i) => ({ set: prefix + k, value: `v${i}\nline two` })));
  const config = await ConfigClient.start({ prefixes: [prefix], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  for (const [i, k] of UNUSUAL.entries()) t.is(config.get(k), `v${i}\nline two`, k);
  t.is(config.size, UNUSUAL.length);
  t.is(Object.getPrototypeOf(config.tree()), Object.prototype, 'a "__proto__" key does not touch the tree\'s prototype');
  t.is((config.tree() as Record<string, unknown>)['__proto__'], 'v8\nline two');
  t.deepEqual(config.tree('ünïcödé'), { ключ: { 键: 'v6\nline two' } });
  for (const k of ['hash#tag', 'question?mark', '__proto__']) {
    const next = nextEvent(config, 'change', (e) => e.key === k);
    await kv.put(prefix + k, 'changed');
    t.deepEqual(await next, { key: k, oldValue: `v${UNUSUAL.indexOf(k)}\nline two`, newValue: 'changed', type: 'modified' });
  }
});

test('512 KB values: a plain value and a YAML document of that size load and change', async (t) => {
  const big = 'x'.repeat(512 * 1024);
  const yamlLines: string[] = [];
  for (let i = 0; yamlLines.join('\n').length < 500 * 1024; i++) yamlLines.push(`key${i}: ${'y'.repeat(100)}`);
  const doc = yamlLines.join('\n');
  await kv.put('big/app/plain', big);
  await kv.put('big/app/doc.yaml', doc);
  const config = await ConfigClient.start({ prefixes: ['big/app'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  t.is((config.get('plain') as string).length, 512 * 1024);
  t.is(config.get('key0'), 'y'.repeat(100));
  t.is(config.size, 1 + yamlLines.length);
  const next = nextEvent(config, 'change', (e) => e.key === 'plain');
  const big2 = `${'z'.repeat(512 * 1024 - 1)}!`;
  await kv.put('big/app/plain', big2);
  const e = await next;
  t.is(e.newValue, big2);
  t.is(e.oldValue, big);
});

test('10,000 keys: one view, one event for one change, a batch for a bulk delete', async (t) => {
  const N = 10_000;
  const value = 'v'.repeat(100);
  const ops = Array.from({ length: N }, (_, i) => ({ set: `many/app/group${i % 100}/key${i}`, value }));
  await kv.txn(ops);
  const config = await ConfigClient.start({ prefixes: ['many/app/'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  t.is(config.size, N);
  t.is(config.keys('group7/').length, 100);
  t.is(Object.keys(config.tree('group42')).length, 100);
  const events: ChangeEvent[] = [];
  config.on('change', (e) => events.push(e));
  let batch = nextEvent(config, 'changes');
  await kv.put('many/app/group5/key5', 'changed');
  t.deepEqual(await batch, [{ key: 'group5/key5', oldValue: value, newValue: 'changed', type: 'modified' }]);
  batch = nextEvent(config, 'changes');
  await kv.del('many/app/group9/', true);
  const deleted = await batch;
  t.is(deleted.length, 100);
  t.true(deleted.every((e) => e.type === 'deleted' && e.key.startsWith('group9/')));
  t.is(config.size, N - 100);
  t.is(events.length, 101);
});

test('a churning value is read at most at the rate limit, and the last value always arrives', async (t) => {
  const real = createConsul({ addr: engine.addr });
  t.teardown(() => real.close());
  let requests = 0;
  const counting: ConsulClient = { ...real, api: real.api, close: () => undefined, request: (m, p, o) => { requests++; return real.request(m, p, o); } };
  await kv.put('churn/app/n', '0');
  const config = await ConfigClient.start({ prefixes: ['churn/app'], consul: counting, rateLimit: { perSecond: 5, burst: 3 }, logger: quiet() });
  t.teardown(() => config.close());
  const before = requests;
  const started = performance.now();
  let puts = 0;
  // the writer counts work, not time: at least 31 changes and 1.5 s (a loaded machine writes slower)
  while (puts <= 30 || performance.now() - started < 1500) {
    await kv.put('churn/app/n', String(++puts));
  }
  const last = String(puts);
  if (config.get('n') !== last) await nextEvent(config, 'change', (e) => e.newValue === last);
  const elapsedS = (performance.now() - started) / 1000;
  const sent = requests - before;
  // a token bucket of 3 refilled at 5/s allows at most 3 + 5 * elapsed requests, plus the one in flight
  t.true(sent <= 3 + Math.ceil(5 * elapsedS) + 1, `${sent} requests for ${puts} changes in ${elapsedS.toFixed(2)} s`);
  t.is(config.get('n'), last);
});
