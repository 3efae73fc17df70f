// The incremental table builder: after any sequence of catalog and KV changes,
// the table it builds from the previous one is the table a fresh build of the
// same snapshot gives; a table already handed out never changes (copy-on-write);
// upstreams that left every route are named once.
import test from 'ava';
import type { CatalogInstance, CatalogSnapshot, HealthStatus } from '@gantry/core';
import { TableBuilder, OutlierDetector, type RouteTable } from '@gantry/gateway';

const opts = { domain: 'gantry.test', prefix: 'urlprefix-', hostTag: 'gantry.host', pathTag: 'gantry.path', includeWarning: false };
const outliers = (): OutlierDetector => new OutlierDetector({ consecutive: 5, baseEjectMs: 1000, maxEjectMs: 10_000 });

/** a small deterministic PRNG (mulberry32): the sequence is the same on every run */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TAGS = ['urlprefix-/a', 'urlprefix-/a/b', 'urlprefix-/c strip=/c', 'urlprefix-shop.example.com/', 'urlprefix-shop.example.com/api', 'urlprefix-/a weight=0.3', 'gantry.host=web.example.com', 'gantry.path=/p', 'version=v1', 'version=v2', 'urlprefix-:9000', 'urlprefix-/x proto=https'];
const STATUS: HealthStatus[] = ['passing', 'passing', 'warning', 'critical'];

/** a comparable form of a table: routes by id, instances by id, policies */
function norm(t: RouteTable): unknown {
  const j = t.toJSON() as { routes: Array<{ host: string; path: string; targets: Array<{ instances: Array<{ id: string }> }> }> };
  return j.routes
    .map((r) => ({ ...r, targets: r.targets.map((x) => ({ ...x, instances: [...x.instances].sort((a, b) => a.id.localeCompare(b.id)) })) }))
    .sort((a, b) => `${a.host}${a.path}`.localeCompare(`${b.host}${b.path}`));
}

const PROBES: Array<[string, string]> = [['x', '/'], ['x', '/a'], ['x', '/a/b/c'], ['x', '/c/d'], ['shop.example.com', '/api/v'], ['shop.example.com', '/'], ['web.example.com', '/'], ['gantry.test', '/p/q'], ['s1.gantry.test', '/'], ['s4.gantry.test', '/zz'], ['x', '/x']];

test('incremental builds equal a fresh build after every change; handed-out tables never change', (t) => {
  const rnd = prng(12);
  const pick = <T>(l: readonly T[]): T => l[Math.floor(rnd() * l.length)]!;
  const services = new Map<string, CatalogInstance[]>();
  let kv = new Map<string, string>();
  let version = 0;
  const builder = new TableBuilder(outliers(), opts);
  let prev: { table: RouteTable; json: string } | undefined;
  let removedTotal = 0;
  for (let step = 0; step < 400; step++) {
    // one to three changes a step
    for (let c = 0, n = 1 + Math.floor(rnd() * 3); c < n; c++) {
      const name = `s${Math.floor(rnd() * 8)}`;
      const what = rnd();
      const list = services.get(name) ?? [];
      if (what < 0.35) {
        const id = `${name}-${Math.floor(rnd() * 3)}`;
        const inst: CatalogInstance = {
          key: `n\u0000${id}`, node: 'n', nodeAddress: '10.0.0.1', id, service: name, address: `10.0.0.${1 + Math.floor(rnd() * 6)}`, port: 80 + Math.floor(rnd() * 2),
          tags: Array.from({ length: Math.floor(rnd() * 3) }, () => pick(TAGS)), meta: rnd() < 0.2 ? { version: pick(['v1', 'v2']) } : {}, createIndex: step, modifyIndex: step, status: pick(STATUS),
        };
        services.set(name, [...list.filter((i) => i.id !== id), inst].sort((a, b) => a.key.localeCompare(b.key)));
      } else if (what < 0.5 && list.length) {
        services.set(name, list.map((i) => (rnd() < 0.5 ? { ...i, status: pick(STATUS) } : i)));
      } else if (what < 0.6) {
        services.delete(name);
      } else if (what < 0.85) {
        kv = new Map(kv);
        const v = pick([
          JSON.stringify({ split: [{ subset: { version: 'v1' }, weight: Math.floor(rnd() * 100) }, { subset: { version: 'v2' }, weight: 10 }] }),
          JSON.stringify({ mirror: { service: pick(['s1', 's2', 's7']), percent: 50 } }),
          JSON.stringify({ subsets: { blue: { version: 'v1' }, green: { version: 'v2' } } }),
          '{not json', undefined,
        ]);
        if (v === undefined) kv.delete(`policy/${name}`);
        else kv.set(`policy/${name}`, v);
      } else {
        kv = new Map(kv);
        if (rnd() < 0.5) kv.set(`active/${name}`, pick(['blue', 'green', 'nope']));
        else kv.delete(`active/${name}`);
      }
    }
    // as core's watcher publishes it: a new map, new objects for every instance
    const snap: CatalogSnapshot = { services: new Map([...services].map(([k, l]) => [k, l.map((i) => ({ ...i }))])), kv, indexes: { catalog: '1', health: '1', kv: '1' }, version: ++version };
    const inc = builder.build(snap);
    const fresh = new TableBuilder(outliers(), opts).build(snap);
    t.deepEqual(norm(inc.table), norm(fresh.table), `step ${step}`);
    t.is(inc.table.size, fresh.table.size, `size at step ${step}`);
    t.deepEqual([...inc.errors].sort(), [...fresh.errors].sort(), `errors at step ${step}`);
    for (const [h, p] of PROBES) t.is(inc.table.lookup(h, p)?.id, fresh.table.lookup(h, p)?.id, `lookup ${h}${p} at step ${step}`);
    for (const k of inc.table.removedUpstreams) t.false(inc.table.hasUpstream(k), `removed ${k} still held at step ${step}`);
    removedTotal += inc.table.removedUpstreams.length;
    if (prev) t.is(JSON.stringify(prev.table.toJSON()), prev.json, `table of step ${step - 1} changed by step ${step}`);
    prev = { table: inc.table, json: JSON.stringify(inc.table.toJSON()) };
  }
  t.true(removedTotal > 0, 'some upstreams left the table on the way');
});

test('an unchanged snapshot rebuilds nothing; one changed service rebuilds only its routes', (t) => {
  const services = new Map<string, CatalogInstance[]>();
  for (let i = 0; i < 1000; i++) services.set(`svc${i}`, [{ key: `n\u0000svc${i}`, node: 'n', nodeAddress: '10.0.0.1', id: `svc${i}`, service: `svc${i}`, address: '10.0.0.1', port: 1000 + i, tags: [`urlprefix-/p${i}`], meta: {}, createIndex: 1, modifyIndex: 1, status: 'passing' }]);
  const snap = (): CatalogSnapshot => ({ services: new Map([...services].map(([k, l]) => [k, l.map((x) => ({ ...x }))])), kv: new Map(), indexes: { catalog: '1', health: '1', kv: null }, version: 1 });
  const b = new TableBuilder(outliers(), opts);
  const first = b.build(snap());
  t.deepEqual(first.changed, { services: 1000, routes: 2000 });
  const same = b.build(snap());
  t.deepEqual(same.changed, { services: 0, routes: 0 });
  t.is(same.table.lookup('svc7.gantry.test', '/'), first.table.lookup('svc7.gantry.test', '/'), 'unchanged routes are shared');
  services.set('svc7', [{ ...services.get('svc7')![0]!, status: 'critical' }]);
  const one = b.build(snap());
  t.deepEqual(one.changed, { services: 1, routes: 2 });
  t.is(one.table.lookup('x', '/p7')!.targets[0]!.instances.length, 0);
  t.is(first.table.lookup('x', '/p7')!.targets[0]!.instances.length, 1, 'the earlier table is untouched');
  t.deepEqual(one.table.removedUpstreams, ['http://10.0.0.1:1007']);
});
