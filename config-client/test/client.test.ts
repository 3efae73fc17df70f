// The client against a real Consul: the first view, typed reads, layers and
// documents, change events, atomic application, 404 on an emptied prefix,
// content comparison, consistency modes and Consul's blocking-query rules.
import test from 'ava';
import { createConsul, type ConsulClient, type RequestOptions } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { ConfigClient, type ChangeEvent } from '../src/index.ts';
import { captureLogs, kvClient, nextEvent, until } from './helpers.ts';

const track = manageEngines(test);
let engine: ConsulEngine;
const kv = kvClient(() => engine.addr);

test.before(async () => {
  engine = await startConsul();
  track('consul', engine);
});

const quiet = () => captureLogs('warn').logger;

test('start loads the whole prefix; typed reads, has, keys and tree come from memory', async (t) => {
  await kv.txn([
    { set: 'read/app/name', value: 'gantry' },
    { set: 'read/app/port', value: '8080' },
    { set: 'read/app/debug', value: 'yes' },
    { set: 'read/app/limits', value: '{"rps": 100, "burst": [1, 2]}' },
    { set: 'read/app/db/url', value: 'postgres://db' },
    { set: 'read/app/db/pool/max', value: '5' },
    { set: 'read/other/x', value: 'not mine' },
  ]);
  const config = await ConfigClient.start({ prefixes: ['read/app'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  t.is(config.source, 'consul');
  t.is(config.get('name'), 'gantry');
  t.is(config.getString('name', 'x'), 'gantry');
  t.is(config.getString('missing', 'fallback'), 'fallback');
  t.is(config.getNumber('port', 0), 8080);
  t.is(config.getNumber('name', -1), -1, 'text that is not a number gives the default');
  t.is(config.getBoolean('debug', false), true);
  t.deepEqual(config.getJSON('limits', {}), { rps: 100, burst: [1, 2] });
  t.is(config.getJSON('limits', {}), config.getJSON('limits', {}), 'parsed once a view');
  t.deepEqual(config.getJSON('name', { fallback: true }), { fallback: true });
  t.true(config.has('db/url'));
  t.false(config.has('x'), 'keys of another prefix are not in the view');
  t.deepEqual(config.keys(), ['db/pool/max', 'db/url', 'debug', 'limits', 'name', 'port']);
  t.deepEqual(config.keys('db/'), ['db/pool/max', 'db/url']);
  t.deepEqual(config.tree('db'), { url: 'postgres://db', pool: { max: '5' } });
  t.is(config.size, 6);
});

test('layers: the most specific prefix wins; YAML, JSON and properties documents are merged under their parent path', async (t) => {
  await kv.txn([
    { set: 'layers/application/timeout', value: '30' },
    { set: 'layers/application/region', value: 'eu' },
    { set: 'layers/application/app.yaml', value: 'db:\n  url: postgres://shared\n  pool: { max: 10 }\nfeature: { a: true }\n' },
    { set: 'layers/orders/timeout', value: '10' },
    { set: 'layers/orders/db/settings.json', value: '{"pool": {"max": 20}}' },
    { set: 'layers/orders,prod/db/pool/max', value: '50' },
    { set: 'layers/orders,prod/mail.properties', value: 'smtp.host=mx.prod\nsmtp.port=25\n' },
    { set: 'layers/orders,prod/raw/data.yaml', value: 'x: 1\n' },
  ]);
  const config = await ConfigClient.start({
    prefixes: ['layers/application/', 'layers/orders/', { prefix: 'layers/orders,prod/', format: 'auto' }],
    consul: { addr: engine.addr },
    logger: quiet(),
  });
  t.teardown(() => config.close());
  t.is(config.get('timeout'), '10', 'config/<app>/ over config/application/');
  t.is(config.get('region'), 'eu', 'what only the least specific layer has stays');
  t.is(config.get('db/url'), 'postgres://shared');
  t.is(config.get('db/pool/max'), '50', 'the profile layer wins over both documents');
  t.is(config.get('feature/a'), true);
  t.is(config.get('smtp/host'), 'mx.prod');
  t.is(config.getNumber('smtp/port', 0), 25);
  t.is(config.get('raw/x'), 1, 'a document in a folder goes under that folder');
  t.false(config.has('app.yaml'), 'a document key is replaced by its content');
  t.deepEqual(config.tree('db'), { url: 'postgres://shared', pool: { max: '50' } });

  const next = nextEvent(config, 'change', (e) => e.key === 'db/pool/max');
  await kv.del('layers/orders,prod/db/pool/max');
  t.deepEqual(await next, { key: 'db/pool/max', oldValue: '50', newValue: 20, type: 'modified' }, 'with the profile key gone, the app document shows through');

  const plain = await ConfigClient.start({ prefixes: [{ prefix: 'layers/application/', format: 'plain' }], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => plain.close());
  t.true(plain.has('app.yaml'), "format 'plain': no key is a document");
  t.false(plain.has('db/url'));
});

test('changes: added, modified and deleted events with old and new values; watch() by key and by prefix', async (t) => {
  await kv.put('events/app/a', '1');
  const config = await ConfigClient.start({ prefixes: ['events/app/'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  const all: ChangeEvent[] = [];
  const byKey: ChangeEvent[] = [];
  const byPrefix: ChangeEvent[] = [];
  config.on('change', (e) => all.push(e));
  const unwatch = config.watch('a', (e) => byKey.push(e));
  config.watch('db', (e) => byPrefix.push(e));

  let next = nextEvent(config, 'change', (e) => e.key === 'a');
  await kv.put('events/app/a', '2');
  t.deepEqual(await next, { key: 'a', oldValue: '1', newValue: '2', type: 'modified' });
  t.is(config.get('a'), '2', 'the new value is readable when the event arrives');

  next = nextEvent(config, 'change', (e) => e.key === 'db/url');
  await kv.put('events/app/db/url', 'u1');
  t.deepEqual(await next, { key: 'db/url', oldValue: undefined, newValue: 'u1', type: 'added' });

  next = nextEvent(config, 'change', (e) => e.key === 'dbx');
  await kv.put('events/app/dbx', 'not under db/');
  await next;

  unwatch();
  next = nextEvent(config, 'change', (e) => e.key === 'a');
  await kv.del('events/app/a');
  t.deepEqual(await next, { key: 'a', oldValue: '2', newValue: undefined, type: 'deleted' });
  t.false(config.has('a'));

  t.deepEqual(byKey.map((e) => e.type), ['modified'], 'watch(key) saw its key until unwatched');
  t.deepEqual(byPrefix.map((e) => e.key), ['db/url'], 'watch(prefix) saw db/url, not dbx');
  t.deepEqual(all.map((e) => `${e.type} ${e.key}`), ['modified a', 'added db/url', 'added dbx', 'deleted a']);
});

test('a transaction is applied atomically: no reader and no listener sees half of it', async (t) => {
  const keys = Array.from({ length: 20 }, (_, i) => `atomic/app/k${String(i).padStart(2, '0')}`);
  await kv.txn(keys.map((k) => ({ set: k, value: 'v0' })));
  const config = await ConfigClient.start({ prefixes: ['atomic/app/'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  const mixed: string[] = [];
  const check = (where: string): void => {
    const seen = new Set(keys.map((k) => config.get(k.slice('atomic/app/'.length))));
    if (seen.size !== 1) mixed.push(`${where}: ${[...seen].map((v) => JSON.stringify(v)).join(',')}`);
  };
  let reads = 0;
  const reader = setInterval(() => { reads++; check('reader'); }, 0);
  t.teardown(() => clearInterval(reader));
  const batches: number[] = [];
  config.on('changes', (changes) => batches.push(changes.length));
  config.on('change', () => check('listener'));
  for (let round = 1; round <= 5; round++) {
    const done = nextEvent(config, 'changes');
    await kv.txn(keys.map((k) => ({ set: k, value: `v${round}` })));
    await done;
  }
  clearInterval(reader);
  t.deepEqual(mixed, []);
  t.true(reads > 0);
  t.deepEqual(batches, [20, 20, 20, 20, 20], 'each transaction arrives as one batch of 20');
  t.is(config.get('k07'), 'v5');
});

test('deleting every key under a prefix is a change (Consul answers 404)', async (t) => {
  await kv.txn([{ set: 'gone/app/a', value: '1' }, { set: 'gone/app/b/c', value: '2' }]);
  const config = await ConfigClient.start({ prefixes: ['gone/app/'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  const batch = nextEvent(config, 'changes');
  await kv.del('gone/app/', true);
  t.deepEqual(await batch, [
    { key: 'a', oldValue: '1', newValue: undefined, type: 'deleted' },
    { key: 'b/c', oldValue: '2', newValue: undefined, type: 'deleted' },
  ]);
  t.deepEqual(config.keys(), []);
  t.deepEqual(config.tree(), {});
  t.is(config.source, 'consul');
  const back = nextEvent(config, 'change');
  await kv.put('gone/app/a', 'again');
  t.deepEqual(await back, { key: 'a', oldValue: undefined, newValue: 'again', type: 'added' });
});

test('a prefix with no keys at start is an empty view, not an error', async (t) => {
  const config = await ConfigClient.start({ prefixes: ['never/written/'], consul: { addr: engine.addr }, logger: quiet(), startTimeout: '20s' });
  t.teardown(() => config.close());
  t.is(config.source, 'consul');
  t.is(config.size, 0);
});

test('the same value written again, and changes to other prefixes, emit nothing', async (t) => {
  await kv.txn([{ set: 'same/app/a', value: '1' }, { set: 'same/app/b.yaml', value: 'x: 1\n' }]);
  const config = await ConfigClient.start({ prefixes: ['same/app/'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => config.close());
  const seen: string[] = [];
  config.on('change', (e) => seen.push(e.key));
  await kv.put('same/app/a', '1');
  await kv.put('same/app/b.yaml', 'x:   1   # same content, other text\n');
  await kv.put('same/other', 'x');
  const marker = nextEvent(config, 'change', (e) => e.key === 'marker');
  await kv.put('same/app/marker', 'm');
  await marker;
  t.deepEqual(seen, ['marker']);
});

test('stale and consistent reads: the mode is sent on every read, and both load and follow changes', async (t) => {
  for (const consistency of ['stale', 'consistent'] as const) {
    await kv.put('modes/app/a', '1');
    const { consul, calls } = recording(engine.addr);
    t.teardown(() => consul.close());
    const config = await ConfigClient.start({ prefixes: ['modes/app/'], consul, consistency, logger: quiet() });
    t.teardown(() => config.close());
    t.is(config.get('a'), '1', consistency);
    const next = nextEvent(config, 'change', (e) => e.newValue === `${consistency}-2`);
    await kv.put('modes/app/a', `${consistency}-2`);
    await next;
    t.true(calls.length >= 2);
    for (const c of calls) t.deepEqual(c.opts.query, { recurse: true, [consistency]: true });
  }
});

/** A Consul client that records every request (what the watcher sends, and what came back). */
function recording(addr: string): { consul: ConsulClient; calls: Array<{ path: string; opts: RequestOptions; index?: string; status?: number }> } {
  const real = createConsul({ addr });
  const calls: Array<{ path: string; opts: RequestOptions; index?: string; status?: number }> = [];
  const consul: ConsulClient = {
    ...real,
    api: real.api,
    close: () => real.close(),
    async request<T>(method: string, path: string, opts: RequestOptions = {}) {
      const call: { path: string; opts: RequestOptions; index?: string; status?: number } = { path, opts };
      calls.push(call);
      const res = await real.request<T>(method, path, opts);
      call.index = res.index;
      call.status = res.status;
      return res;
    },
  };
  return { consul, calls };
}

test("blocking queries by Consul's rules: first read plain, then index = last X-Consul-Index, wait with jitter, timeout beyond it", async (t) => {
  await kv.put('rules/app/a', '0');
  const { consul, calls } = recording(engine.addr);
  t.teardown(() => consul.close());
  const config = await ConfigClient.start({ prefixes: ['rules/app'], consul, wait: '2s', timeout: '3s', logger: quiet() });
  t.teardown(() => config.close());
  for (let i = 1; i <= 3; i++) {
    const next = nextEvent(config, 'change');
    await kv.put('rules/app/a', String(i));
    await next;
  }
  // let one blocking query run out its wait (2 s) and be sent again
  await until('a blocking query that timed out and was sent again', () => calls.filter((c) => c.index !== undefined && c.opts.index === c.index).length >= 1 && calls.length >= 6);
  await config.close();
  t.is(calls[0]!.opts.index, undefined, 'the first read is plain');
  t.is(calls[0]!.opts.wait, undefined);
  t.is(calls[0]!.path, '/v1/kv/rules/app/');
  t.deepEqual(calls[0]!.opts.query, { recurse: true });
  for (let i = 1; i < calls.length; i++) {
    const c = calls[i]!;
    t.is(c.opts.index, calls[i - 1]!.index, `request ${i} waits past the index request ${i - 1} returned`);
    t.not(c.opts.index, '0');
    const waitMs = Number(/^(\d+)ms$/.exec(c.opts.wait ?? '')?.[1] ?? (c.opts.wait === '2s' ? 2000 : NaN));
    t.true(waitMs > 2000 - 2000 / 16 - 1 && waitMs <= 2000, `wait ${c.opts.wait} is 2s less up to 1/16 of jitter`);
    t.true((c.opts.timeoutMs ?? 0) > waitMs + waitMs / 16, `HTTP timeout ${c.opts.timeoutMs} ms is beyond the wait and Consul's own jitter`);
  }
  const waits = new Set(calls.slice(1).map((c) => c.opts.wait));
  t.true(waits.size > 1 || calls.length < 4, 'the wait is jittered');
});

test('close() aborts the blocking queries at once and stops every event', async (t) => {
  const config = await ConfigClient.start({ prefixes: ['closing/app'], consul: { addr: engine.addr }, wait: '10m', logger: quiet() });
  let events = 0;
  config.on('change', () => events++);
  await config.close();
  await config.close();
  await kv.put('closing/app/a', '1');
  const witness = await ConfigClient.start({ prefixes: ['closing/app'], consul: { addr: engine.addr }, logger: quiet() });
  t.teardown(() => witness.close());
  t.is(witness.get('a'), '1');
  t.is(events, 0);
});

test('listeners that throw are logged; the other listeners and the client go on', async (t) => {
  const logs = captureLogs('warn');
  const config = await ConfigClient.start({ prefixes: ['throwing/app'], consul: { addr: engine.addr }, logger: logs.logger });
  t.teardown(() => config.close());
  config.on('change', () => { throw new Error('listener bug'); });
  let first = nextEvent(config, 'change');
  await kv.put('throwing/app/a', '1');
  await first;
  first = nextEvent(config, 'change');
  await kv.put('throwing/app/a', '2');
  t.is((await first).newValue, '2');
  t.true(logs.lines().some((l) => l.err === 'listener bug' && l.event === 'change'));
});

test('an index that goes backwards (a Consul snapshot restore) resets the watcher to a plain read, and it goes on', async (t) => {
  await kv.put('restore/app/a', 'before');
  const saved = Buffer.from(await (await fetch(`${engine.addr}/v1/snapshot`)).arrayBuffer());
  for (let i = 0; i < 20; i++) await kv.put('restore/app/a', `later-${i}`);
  const { consul, calls } = recording(engine.addr);
  t.teardown(() => consul.close());
  const warnings: string[] = [];
  const config = await ConfigClient.start({ prefixes: ['restore/app'], consul, wait: '1s', logger: quiet() });
  t.teardown(() => config.close());
  config.on('warning', (w) => warnings.push(w.message));
  t.is(config.get('a'), 'later-19');
  const reverted = nextEvent(config, 'change', (e) => e.newValue === 'before');
  const restored = await fetch(`${engine.addr}/v1/snapshot`, { method: 'PUT', body: saved });
  t.is(restored.status, 200);
  await reverted;
  // the next blocking answer carries the restored (lower) index: the watcher must read plainly again
  const backwards = await until('an answer with a lower index than the request', () => calls.findIndex((c) => c.opts.index !== undefined && c.index !== undefined && BigInt(c.index) < BigInt(c.opts.index)) + 1);
  await until('the request after it', () => calls.length > backwards);
  t.is(calls[backwards]!.opts.index, undefined, 'a plain read after the index went backwards');
  t.deepEqual(warnings, [], 'no error was involved');
  const next = nextEvent(config, 'change', (e) => e.newValue === 'after-restore');
  await kv.put('restore/app/a', 'after-restore');
  await next;
  t.is(config.get('a'), 'after-restore');
});
