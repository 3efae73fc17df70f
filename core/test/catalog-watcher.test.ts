// The watcher against a real Consul: a constant number of blocking queries
// whatever the number of services, only changed nodes read, health changes
// without any fetch, removals and additions located by the per-node index
// (with checks or without, one of several instances) with no timer involved,
// and the last data kept while Consul is away (then an index reset).
import test from 'ava';
import { CatalogWatcher, createConsul, createLogger, type CatalogSnapshot } from '../src/index.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { register, setCheck, deregister, kvPut } from '../../test/harness/consul-catalog.ts';

const track = manageEngines(test);
const log = createLogger({ component: 'templater-test', level: 'silent' });

function watch(consul: ConsulEngine, o: { kvPrefix?: string; waitMs?: number; resyncMs?: number } = {}): { w: CatalogWatcher; counts: Map<string, number>; close: () => Promise<void> } {
  const client = createConsul({ addr: consul.addr });
  const counts = new Map<string, number>();
  const w = new CatalogWatcher({
    consul: client, log, kvPrefix: o.kvPrefix, waitMs: o.waitMs ?? 60_000, minSpacingMs: 20, resyncMs: o.resyncMs ?? 0,
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

    // idle: blocking queries renew (wait 1s), nothing else is asked — counted over three renewals
    await waitUntil('three renewals of the catalog query', async () => (counts.get('catalog') ?? 0) - (startup.get('catalog') ?? 0) >= 3, { timeoutMs: 20_000, intervalMs: 50 });
    const idle = new Map([...counts].map(([k, v]) => [k, v - (startup.get(k) ?? 0)]));
    t.deepEqual([...idle.entries()].filter(([, v]) => v > 0).map(([k]) => k).sort(), ['catalog', 'health']);
    t.true((idle.get('catalog') ?? 0) <= 6 && (idle.get('health') ?? 0) <= 6, JSON.stringify([...idle]));

    // one new instance of an existing service, written with its check: the node it is on is read
    // (node list, an index probe a node — the test node and the agent's —, one node read), its checks once at most; no sweep
    const before = { ...w.stats };
    const beforeCounts = new Map(counts);
    await register(consul.addr, { id: 'svc7-b', name: 'svc7', port: 2007, check: 'passing' });
    await until('svc7-b', w, (s) => s.services.get('svc7')?.some((i) => i.id === 'svc7-b'));
    t.is(w.stats.sweeps, before.sweeps);
    t.is(w.stats.nodeReads - before.nodeReads, 1);
    t.true(w.stats.serviceReads - before.serviceReads <= 1);
    t.true((counts.get('node') ?? 0) - (beforeCounts.get('node') ?? 0) <= 4, `node requests: ${(counts.get('node') ?? 0) - (beforeCounts.get('node') ?? 0)}`);
  } finally {
    await close();
  }
});

test('instances registered without checks after the last check change (their ModifyIndex above the checks index): at start one read of every check, not one read a service; statuses right', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  await register(consul.addr, { id: 'crit-a', name: 'crit', port: 900, check: 'critical' });
  await register(consul.addr, { id: 'warn-a', name: 'warn', port: 901, check: 'warning' });
  for (let i = 0; i < 120; i++) await register(consul.addr, { id: `plain${i}-a`, name: `plain${i}`, port: 1000 + i });
  const { w, counts, close } = watch(consul, { waitMs: 1000 });
  try {
    await w.ready();
    const s = await until('122 services', w, (x) => (x.services.size >= 122 ? x : undefined));
    t.is(w.stats.serviceReads, 0, 'no read a service');
    t.true(w.stats.bulkCheckReads >= 1);
    t.true((counts.get('service') ?? 0) === 0);
    t.is(s.services.get('crit')?.[0]?.status, 'critical');
    t.is(s.services.get('warn')?.[0]?.status, 'warning');
    t.true([...s.services].filter(([n]) => n.startsWith('plain')).every(([, l]) => l.length === 1 && l[0]!.status === 'passing'));
    // a check on one of them turns critical later: the blocking health query carries it (the read at start does not stick)
    await setCheck(consul.addr, 'plain7-a', 'critical');
    await until('plain7 critical', w, (x) => x.services.get('plain7')?.[0]?.status === 'critical');
    // a burst of 40 more, without checks: one read of every check again, none a service
    const reads = w.stats.serviceReads;
    await Promise.all(Array.from({ length: 40 }, (_, i) => register(consul.addr, { id: `burst${i}-a`, name: `burst${i}`, port: 3000 + i })));
    await until('the burst', w, (x) => x.services.has('burst39') && x.services.has('burst0'));
    t.true(w.stats.serviceReads - reads <= 32, `service reads for the burst: ${w.stats.serviceReads - reads}`);
    t.is(w.snapshot()!.services.get('plain7')?.[0]?.status, 'critical');
    t.is(w.snapshot()!.services.get('crit')?.[0]?.status, 'critical');
  } finally {
    await close();
  }
});

test('a service new in the listing is read on its own and published before its node is read (checks with it); the node read that follows changes nothing; a new node too', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  for (let i = 0; i < 50; i++) await register(consul.addr, { id: `old${i}-a`, name: `old${i}`, port: 1000 + i, node: 'big' });
  const { w, close } = watch(consul);
  const seen = new Map<string, { nodeReads: number; newServiceReads: number; status: string | undefined }>();
  w.onChange((s) => {
    for (const name of ['fresh', 'fresh2']) {
      if (!seen.has(name) && s.services.has(name)) seen.set(name, { nodeReads: w.stats.nodeReads, newServiceReads: w.stats.newServiceReads, status: s.services.get(name)![0]!.status });
    }
  });
  try {
    const size = (await until('50 services', w, (s) => s.services.has('old49') && s)).services.size;
    const before = { ...w.stats };
    await register(consul.addr, { id: 'fresh-a', name: 'fresh', port: 2000, node: 'big', check: 'critical' });
    await until('fresh', w, (s) => s.services.has('fresh'));
    const first = seen.get('fresh')!;
    t.is(first.nodeReads, before.nodeReads, 'published before the node read');
    t.is(first.newServiceReads - before.newServiceReads, 1);
    t.is(first.status, 'critical', 'its check came with it');
    // the node read follows and finds nothing else changed
    await waitUntil('the node read after', async () => w.stats.nodeReads > before.nodeReads, { timeoutMs: 20_000, intervalMs: 20 });
    const after = w.snapshot()!;
    t.deepEqual(after.services.get('fresh')!.map((i) => [i.id, i.status]), [['fresh-a', 'critical']]);
    t.is(after.services.size, size + 1);
    // on a node not held before
    await register(consul.addr, { id: 'fresh2-a', name: 'fresh2', port: 2001, node: 'newhost' });
    await until('fresh2', w, (s) => s.services.get('fresh2')?.[0]?.status === 'passing');
    t.is(seen.get('fresh2')!.newServiceReads - before.newServiceReads, 2);
    await register(consul.addr, { id: 'fresh2-b', name: 'fresh2', port: 2002, node: 'newhost' });
    await until('fresh2-b from the node read', w, (s) => s.services.get('fresh2')?.length === 2);
    await deregister(consul.addr, 'fresh2-a', 'newhost');
    await deregister(consul.addr, 'fresh2-b', 'newhost');
    await until('fresh2 gone', w, (s) => !s.services.has('fresh2'));
    t.is(w.stats.sweeps, 1);
    t.is(w.lastError, undefined);
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

test('changes without checks (a new instance, a new port on re-registration, removals) are found by the per-node index', async (t) => {
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
    // a whole node deregistered: its instances go (the probe of a node gone is no error)
    await register(consul.addr, { id: 'db1', name: 'db', port: 5432, node: 'host-gone' });
    await register(consul.addr, { id: 'db2', name: 'db', port: 5433 });
    await until('db on two nodes', w, (s) => s.services.get('db')?.length === 2);
    const r = await fetch(`${consul.addr}/v1/catalog/deregister`, { method: 'PUT', body: JSON.stringify({ Node: 'host-gone' }) });
    t.true(r.ok);
    const left = await until('host-gone\'s instance gone', w, (s) => s.services.get('db')?.length === 1 && s.services.get('db'));
    t.deepEqual(left.map((i) => i.id), ['db2']);
    await register(consul.addr, { id: 'db3', name: 'db', port: 5434 });
    await until('db3 after the node went', w, (s) => s.services.get('db')?.length === 2);
    t.is(w.lastError, undefined);
    t.true((counts.get('node') ?? 0) > 1);
    t.is(w.stats.sweeps, 1, 'only the first sync read every node');
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
    // the watcher has met the outage (its error is set): the snapshot it serves must be the old one
    await until('the outage seen', w, () => w.lastError !== undefined && w.lastError !== null);
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

// Issue 15: a removal (or an addition right after one) is seen because the node's index moved,
// never because a timer fired. The watcher runs with its default resync safety net (5 min):
// stats.resyncs counts its firings and must stay 0, and stats.sweeps stays at the first sync's 1.
for (const [label, check] of [['without checks', undefined], ['with checks', 'passing']] as const) {
  test(`a removal of a service ${label} is seen with no timer firing; an addition right after it too`, async (t) => {
    const consul = await startConsul();
    track('consul', consul);
    await register(consul.addr, { id: 'solo1', name: 'solo', port: 7001, ...(check ? { check } : {}) });
    await register(consul.addr, { id: 'other1', name: 'other', port: 7100, ...(check ? { check } : {}) });
    const { w, close } = watch(consul, { resyncMs: 300_000 });
    try {
      await until('solo', w, (s) => s.services.get('solo')?.length === 1);
      for (let round = 0; round < 5; round++) {
        await deregister(consul.addr, 'solo1');
        await until(`solo gone (round ${round})`, w, (s) => !s.services.has('solo'));
        await register(consul.addr, { id: 'solo1', name: 'solo', port: 7001 + round, ...(check ? { check } : {}) });
        const back = await until(`solo back (round ${round})`, w, (s) => s.services.get('solo')?.find((i) => i.port === 7001 + round));
        t.is(back.status, 'passing');
      }
      t.is(w.snapshot()!.services.get('other')?.length, 1, 'the other service is untouched');
      t.is(w.stats.resyncs, 0, 'the resync safety net never fired');
      t.is(w.stats.sweeps, 1, 'no sweep of every node after the first sync');
    } finally {
      await close();
    }
  });
}

test('one of several instances removed (with and without checks, on two nodes) is seen with no timer firing', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  for (let i = 0; i < 4; i++) {
    await register(consul.addr, { id: `pool${i}`, name: 'pool', port: 7200 + i, node: i % 2 ? 'node-b' : 'node-a', ...(i < 2 ? { check: 'passing' as const } : {}) });
  }
  const { w, close } = watch(consul, { resyncMs: 300_000 });
  try {
    await until('pool of 4', w, (s) => s.services.get('pool')?.length === 4);
    for (const [id, node] of [['pool3', 'node-b'], ['pool0', 'node-a'], ['pool2', 'node-a']] as const) {
      await deregister(consul.addr, id, node);
      await until(`${id} gone`, w, (s) => !s.services.get('pool')?.some((i) => i.id === id));
    }
    t.deepEqual(w.snapshot()!.services.get('pool')!.map((i) => i.id), ['pool1']);
    // a critical check written with a new instance counts at once (its checks read with it)
    await register(consul.addr, { id: 'pool9', name: 'pool', port: 7209, node: 'node-b', check: 'critical' });
    const added = await until('pool9', w, (s) => s.services.get('pool')?.find((i) => i.id === 'pool9'));
    t.is(added.status, 'critical');
    t.is(w.stats.resyncs, 0);
    t.is(w.stats.sweeps, 1);
  } finally {
    await close();
  }
});
