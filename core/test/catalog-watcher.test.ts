// The watcher against a real Consul: a constant number of blocking queries
// whatever the number of services, only changed services fetched, health
// changes without any fetch, the node sweep for what the indexes cannot show,
// and the last data kept while Consul is away (then an index reset).
import test from 'ava';
import { CatalogWatcher, createConsul, createLogger, type CatalogSnapshot } from '../src/index.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil, sleep } from '../../test/harness/process.ts';
import { register, setCheck, deregister, kvPut } from '../../test/harness/consul-catalog.ts';

const track = manageEngines(test);
const log = createLogger({ component: 'templater-test', level: 'silent' });

function watch(consul: ConsulEngine, o: { kvPrefix?: string; waitMs?: number } = {}): { w: CatalogWatcher; counts: Map<string, number>; close: () => Promise<void> } {
  const client = createConsul({ addr: consul.addr });
  const counts = new Map<string, number>();
  const w = new CatalogWatcher({
    consul: client, log, kvPrefix: o.kvPrefix, waitMs: o.waitMs ?? 60_000, minSpacingMs: 20, resyncMs: 0,
    onRequest: (e) => counts.set(e, (counts.get(e) ?? 0) + 1),
  });
  w.start();
  return { w, counts, close: async () => { w.stop(); await w.closed(); client.close(); } };
}

const until = <T>(what: string, w: CatalogWatcher, pred: (s: CatalogSnapshot) => T | undefined | false): Promise<T> =>
  waitUntil(what, async () => { const s = w.snapshot(); return s ? pred(s) : undefined; }, { timeoutMs: 20_000, intervalMs: 20 });

test('300 services: two blocking queries, no request per service while idle; a new instance is fetched alone', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  for (let i = 0; i < 300; i++) await register(consul.addr, { id: `svc${i}-a`, name: `svc${i}`, port: 1000 + i, check: 'passing' });
  const { w, counts, close } = watch(consul, { waitMs: 1000 });
  try {
    await w.ready();
    await until('300 services', w, (s) => s.services.size >= 300);
    const startup = new Map(counts);
    // the first sync is one sweep: a request a node, not a service
    t.true((startup.get('service') ?? 0) < 5, `service fetches at start: ${startup.get('service')}`);
    t.true((startup.get('node') ?? 0) <= 4, `node fetches at start: ${startup.get('node')}`);

    // idle: blocking queries renew (wait 1s), nothing else is asked
    await sleep(3500);
    const idle = new Map([...counts].map(([k, v]) => [k, v - (startup.get(k) ?? 0)]));
    t.deepEqual([...idle.entries()].filter(([, v]) => v > 0).map(([k]) => k).sort(), ['catalog', 'health']);
    t.true((idle.get('catalog') ?? 0) <= 6 && (idle.get('health') ?? 0) <= 6, JSON.stringify([...idle]));

    // one new instance of an existing service, written with its check: one fetch, no sweep
    const before = new Map(counts);
    await register(consul.addr, { id: 'svc7-b', name: 'svc7', port: 2007, check: 'passing' });
    await until('svc7-b', w, (s) => s.services.get('svc7')?.some((i) => i.id === 'svc7-b'));
    t.is((counts.get('service') ?? 0) - (before.get('service') ?? 0), 1);
    t.is((counts.get('node') ?? 0) - (before.get('node') ?? 0), 0);
  } finally {
    await close();
  }
});

test('health changes are applied from /v1/health/state/any without fetching the service', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  await register(consul.addr, { id: 'web1', name: 'web', check: 'passing' });
  await register(consul.addr, { id: 'web2', name: 'web', check: 'passing' });
  const { w, counts, close } = watch(consul);
  try {
    await until('web', w, (s) => s.services.get('web')?.length === 2);
    const before = new Map(counts);
    await setCheck(consul.addr, 'web2', 'critical');
    const web2 = await until('web2 critical', w, (s) => s.services.get('web')?.find((i) => i.id === 'web2' && i.status === 'critical'));
    t.is(web2.status, 'critical');
    await setCheck(consul.addr, 'web2', 'warning');
    await until('web2 warning', w, (s) => s.services.get('web')?.find((i) => i.id === 'web2' && i.status === 'warning'));
    t.is((counts.get('service') ?? 0) - (before.get('service') ?? 0), 0);
    t.is((counts.get('node') ?? 0) - (before.get('node') ?? 0), 0);
    t.is(w.snapshot()!.services.get('web')!.find((i) => i.id === 'web1')!.status, 'passing');
  } finally {
    await close();
  }
});

test('what the indexes cannot show (no check, new port on re-registration, removal) is found by the node sweep', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  await register(consul.addr, { id: 'api1', name: 'api', port: 8001 });
  const { w, counts, close } = watch(consul);
  try {
    await until('api', w, (s) => s.services.get('api')?.length === 1);
    await register(consul.addr, { id: 'api2', name: 'api', port: 8002 });
    await until('api2', w, (s) => s.services.get('api')?.length === 2);
    await register(consul.addr, { id: 'api1', name: 'api', port: 9001 });
    const moved = await until('api1 on 9001', w, (s) => s.services.get('api')?.find((i) => i.id === 'api1' && i.port === 9001));
    t.is(moved.port, 9001);
    await deregister(consul.addr, 'api2');
    await until('api2 gone', w, (s) => s.services.get('api')?.length === 1);
    await deregister(consul.addr, 'api1');
    await until('api gone', w, (s) => !s.services.has('api'));
    t.true((counts.get('node') ?? 0) > 1);
  } finally {
    await close();
  }
});

test('KV pairs under the prefix, relative to it', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  await register(consul.addr, { id: 'x', name: 'x' });
  await kvPut(consul.addr, 'gantry/app/color', 'blue');
  await kvPut(consul.addr, 'other/key', 'no');
  const { w, close } = watch(consul, { kvPrefix: 'gantry/app' });
  try {
    await until('kv', w, (s) => s.kv.get('color') === 'blue');
    await kvPut(consul.addr, 'gantry/app/size', 'L');
    await until('kv size', w, (s) => s.kv.get('size') === 'L');
    t.deepEqual([...w.snapshot()!.kv.keys()].sort(), ['color', 'size']);
  } finally {
    await close();
  }
});

test('Consul away: the last data stays; back with a reset index: the watcher follows the new catalog', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  for (let i = 0; i < 20; i++) await register(consul.addr, { id: `old${i}`, name: 'old' });
  await kvPut(consul.addr, 'pad/x', 'y'); // raise the index a little
  const { w, close } = watch(consul, { waitMs: 2000 });
  try {
    await until('old', w, (s) => s.services.get('old')?.length === 20);
    const version = w.snapshot()!.version;
    const oldIndex = BigInt(w.snapshot()!.indexes.catalog);
    await consul.kill();
    await sleep(1500);
    t.is(w.snapshot()!.version, version);
    t.is(w.snapshot()!.services.get('old')?.length, 20);
    t.truthy(w.lastError);
    await consul.restart();
    await register(consul.addr, { id: 'new1', name: 'new' });
    const s = await until('new catalog', w, (x) => x.services.has('new') && !x.services.has('old') && x);
    t.true(BigInt(s.indexes.catalog) < oldIndex, `index ${s.indexes.catalog} after reset, ${oldIndex} before`);
  } finally {
    await close();
  }
});
