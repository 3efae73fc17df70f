import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildView, skeletonOf, type ViewOptions, type Skip } from '../src/view.ts';
import { SlotTable } from '../src/runtime/slots.ts';
import { RouteTable } from '../src/runtime/routes.ts';
import { VipPool, VipPoolExhausted, parseCidr } from '../src/vip/pool.ts';
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';

const opts = (o: Partial<ViewOptions> = {}): ViewOptions => ({
  health: 'passing', domain: 'gantry.test', tcpTag: 'gantry.tcp', tenantTag: 'gantry.tenant', hostTag: 'gantry.host', pathTag: 'gantry.path',
  minSlots: 2, settings: {}, ...o,
});

let n = 0;
function inst(service: string, o: Partial<CatalogInstance> = {}): CatalogInstance {
  n++;
  const id = o.id ?? `${service}-${n}`;
  return { key: `node1\u0000${id}`, node: 'node1', nodeAddress: '10.0.0.1', id, service, address: `10.1.0.${n % 250}`, port: 8000 + n, tags: [], meta: {}, createIndex: n, modifyIndex: n, status: 'passing', ...o };
}

function snap(list: CatalogInstance[], kv: Record<string, string> = {}): CatalogSnapshot {
  const services = new Map<string, CatalogInstance[]>();
  for (const i of list) services.set(i.service, [...(services.get(i.service) ?? []), i]);
  return { services, kv: new Map(Object.entries(kv)), indexes: { catalog: '1', health: '1', kv: null }, version: ++n };
}

function assign(minSlots = 2): { vip: (k: string) => string | null; slots: SlotTable['assign']; table: SlotTable } {
  const table = new SlotTable(minSlots);
  let v = 0;
  const vips = new Map<string, string>();
  return {
    table,
    vip: (k) => { if (!vips.has(k)) vips.set(k, `127.77.0.${++v}`); return vips.get(k)!; },
    slots: (b, i) => table.assign(b, i),
  };
}

test('health filter: passing, warning or any', (t) => {
  const list = [inst('web', { status: 'passing' }), inst('web', { status: 'warning' }), inst('web', { status: 'critical' })];
  for (const [health, count] of [['passing', 1], ['warning', 2], ['any', 3]] as const) {
    const v = buildView(snap(list), opts({ health }), assign());
    t.is(v.service.web!.instances.length, count, health);
    t.is(v.service.web!.all.length, 3);
    t.is(v.http[0]!.instances.length, count);
  }
});

test('groups: DNS name, backend, L4 port and VIP, tenant prefix from a tag or meta, hosts and paths from tags', (t) => {
  const v = buildView(snap([
    inst('orders', { tags: ['gantry.host=Shop.Example.com', 'gantry.path=/orders', 'v1'] }),
    inst('redis', { tags: ['gantry.tcp=6379', 'gantry.tenant=developer1'] }),
    inst('redis', { meta: { 'gantry-tcp': '6379', 'gantry-tenant': 'dev2' } }),
    inst('consul'),
  ]), opts({ allowHostSuffixes: ['example.com'] }), assign());
  t.deepEqual(v.groups.map((g) => g.fqdn), ['dev2-redis.gantry.test', 'developer1-redis.gantry.test', 'orders.gantry.test']);
  const orders = v.http.find((g) => g.service === 'orders')!;
  t.is(orders.backend, 'l7_orders.gantry.test');
  t.deepEqual(orders.hosts, ['shop.example.com']);
  t.deepEqual(orders.paths, ['/orders']);
  t.deepEqual(orders.matchHosts, ['orders.gantry.test', 'shop.example.com']);
  t.is(v.tcp.length, 2);
  const dev1 = v.tcp.find((g) => g.tenant === 'developer1')!;
  t.is(dev1.backend, 'l4_developer1-redis.gantry.test');
  t.is(dev1.tcpPort, 6379);
  t.regex(dev1.vip!, /^127\.77\.0\.\d+$/);
  t.deepEqual(dev1.aliases, ['developer1.redis.gantry.test', 'developer1.redis']);
  t.notDeepEqual(dev1.vip, v.tcp.find((g) => g.tenant === 'dev2')!.vip);
  t.false('consul' in v.service);
});

test('hostile names and tags: nothing raw in what a group carries; what cannot be made safe is skipped and reported', (t) => {
  const tenK = 'x'.repeat(10_000);
  const skips: Skip[] = [];
  const v = buildView(snap([
    inst('evil\nserver pwn 1.2.3.4:80', { tags: ['gantry.host=a b.example.com\n', 'gantry.path=/x\ny', 'gantry.tcp=63 79'] }),
    inst('sp ace#"\'{{x}}'),
    inst(tenK, { tags: [`gantry.host=${tenK}.com`] }),
    inst('ok', { address: '10.0.0.1\n  server x 6.6.6.6:80' }),
    inst('ok', { address: 'db.internal', port: 5432 }),
    inst('ok', { port: 0 }),
    inst('###'),
    inst('Orders'), inst('orders'),
  ]), opts(), assign(), (s) => skips.push(s));
  const safe = /^[a-z0-9.-]+$/;
  for (const g of v.groups) {
    t.regex(g.fqdn, safe);
    t.true(g.fqdn.length <= 253);
    t.regex(g.backend, /^[A-Za-z0-9_.:-]{1,100}$/);
    for (const h of [...g.aliases, ...g.hosts, ...g.matchHosts]) t.regex(h, safe);
    for (const p of g.paths) t.notRegex(p, /[\u0000-\u001f]/);
    for (const s of g.slots) if (s.address !== null) t.regex(s.address, /^[0-9a-z.:-]+$/);
  }
  const reasons = new Set(skips.map((s) => s.reason));
  for (const r of ['address', 'port', 'host_tag', 'path_tag', 'tcp_port', 'service_name', 'name_collision']) t.true(reasons.has(r), r);
  // the exact name wins the collision
  t.is(v.groups.find((g) => g.fqdn === 'orders.gantry.test')!.service, 'orders');
  // a host name address is kept (HAProxy resolves it); the injected one is not
  t.deepEqual(v.groups.find((g) => g.service === 'ok')!.instances.map((i) => i.address), ['db.internal']);
  t.true(v.groups.some((g) => g.fqdn.startsWith('evil-server-pwn-1-2-3-4-80')));
});

test('slots are stable: an instance keeps its slot, a freed slot is reused, slots grow and never shrink', (t) => {
  const a = assign(2);
  const i1 = inst('web');
  const i2 = inst('web');
  const i3 = inst('web');
  const v1 = buildView(snap([i1, i2]), opts(), a);
  t.deepEqual(v1.http[0]!.slots.map((s) => s.instance?.id ?? null), [i1.id, i2.id]);
  const v2 = buildView(snap([i2]), opts(), a);
  t.deepEqual(v2.http[0]!.slots.map((s) => s.instance?.id ?? null), [null, i2.id]);
  const v3 = buildView(snap([i2, i3]), opts(), a);
  t.deepEqual(v3.http[0]!.slots.map((s) => s.instance?.id ?? null), [i3.id, i2.id]);
  // an instance replaced by another in one change: the freed slot is not reused in that change
  // (it goes to maintenance first), the newcomer takes another one, growing the table if needed
  const i4 = inst('web');
  const v3b = buildView(snap([i2, i4]), opts(), a);
  t.deepEqual(v3b.http[0]!.slots.map((s) => s.instance?.id ?? null), [null, i2.id, i4.id, null]);
  // later, a slot never used comes first, then the one freed longest ago
  const v3c = buildView(snap([i2, i3]), opts(), a);
  t.deepEqual(v3c.http[0]!.slots.map((s) => s.instance?.id ?? null), [null, i2.id, null, i3.id], 'the never-used s4');
  // the same instance at a new port leaves its slot as well, and takes another (s1, freed before s3)
  const v3d = buildView(snap([i2, { ...i3, port: i3.port + 1 }]), opts(), a);
  t.deepEqual(v3d.http[0]!.slots.map((s) => s.instance?.id ?? null), [i3.id, i2.id, null, null]);
  t.is(v3d.http[0]!.slots[0]!.port, i3.port + 1);
  const v3e = buildView(snap([i2, i3]), opts(), a);
  t.deepEqual(v3e.http[0]!.slots.map((s) => s.instance?.id ?? null), [null, i2.id, i3.id, null], 's3, freed before s4 (s1 was freed by this change)');
  const more = [inst('web'), inst('web'), inst('web')];
  const v4 = buildView(snap([i2, i3, ...more]), opts(), a);
  t.is(v4.http[0]!.slots.length, 6);
  t.deepEqual(v4.http[0]!.slots.slice(1, 3).map((s) => s.instance?.id), [i2.id, i3.id], 'the instances that stayed keep their slots');
  const v5 = buildView(snap([i2]), opts(), a);
  t.is(v5.http[0]!.slots.length, 6);
  t.deepEqual(v5.http[0]!.slots.map((s) => s.name), ['s1', 's2', 's3', 's4', 's5', 's6']);
  // the skeleton forgets who sits where, and can be cut to an older slot count
  const sk = skeletonOf(v4, new Map([['l7_web.gantry.test', 2]]));
  t.deepEqual(sk.http[0]!.slots, [{ name: 's1', instance: null, address: null, port: null }, { name: 's2', instance: null, address: null, port: null }]);
});

test('VIP pool: stable hash-based picks, persisted; exhaustion is an error naming the pool; a VIP no group wants goes back after the grace period', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-vip-'));
  try {
    const file = join(dir, 'vips.json');
    const t0 = 1_000_000;
    const p1 = new VipPool({ pool: '127.77.3.0/29', stateFile: file, graceMs: 60_000 });
    const a = p1.assign('dev1/redis', t0);
    const b = p1.assign('dev1/mysql', t0);
    t.not(a, b);
    t.is(p1.assign('dev1/redis', t0), a);
    await p1.save();
    t.deepEqual(Object.keys((JSON.parse(readFileSync(file, 'utf8')) as { assignments: object }).assignments).sort(), ['dev1/mysql', 'dev1/redis']);
    // another process (a restart) reads the same assignments
    const p2 = new VipPool({ pool: '127.77.3.0/29', stateFile: file, graceMs: 60_000 });
    t.is(p2.vipOf('dev1/redis'), a);
    t.is(p2.assign('dev1/mysql', t0), b);
    t.is(p2.assign('dev1/redis', t0), a);
    // a /29 has 6 usable addresses: the 7th group gets an error naming the pool
    for (const k of ['c', 'd', 'e', 'f']) t.truthy(p2.assign(k, t0));
    const err = t.throws(() => p2.assign('g', t0), { instanceOf: VipPoolExhausted });
    t.is(err.code, 'E_VIP_POOL_EXHAUSTED');
    t.is(err.pool, '127.77.3.0/29');
    t.regex(err.message, /VIP pool 127\.77\.3\.0\/29 is exhausted: 6 addresses, 6 reserved \(0 by groups that no longer want one/);
    // f no longer wants its VIP (gone, or its gantry.tcp tag removed): kept for the grace period
    const inUse = new Set(['dev1/redis', 'dev1/mysql', 'c', 'd', 'e']);
    t.deepEqual(p2.release(inUse, t0 + 1000), []);
    t.regex(t.throws(() => p2.assign('g', t0 + 2000)).message, /1 by groups that no longer want one, given back after the grace period of 60s, the first in 59s/);
    t.is(p2.nextExpiryIn(t0 + 2000), 59_000);
    // f comes back within the grace period: same VIP
    const f = p2.vipOf('f')!;
    t.is(p2.assign('f', t0 + 3000), f);
    t.deepEqual(p2.release(new Set([...inUse, 'f']), t0 + 3000), []);
    // f leaves again; after the grace period its address goes back to the pool
    t.deepEqual(p2.release(inUse, t0 + 4000), []);
    t.deepEqual(p2.expire(t0 + 4000 + 59_999), []);
    t.deepEqual(p2.expire(t0 + 4000 + 60_000), [{ key: 'f', vip: f }]);
    t.is(p2.vipOf('f'), undefined);
    t.is(p2.free(), 1);
    t.truthy(p2.assign('g', t0 + 70_000));
    t.is(p2.vipOf('dev1/redis'), a);
    await p2.save();
    // the grace period survives a restart: a group active when saved starts it at load
    const p3 = new VipPool({ pool: '127.77.3.0/29', stateFile: file, graceMs: 60_000 });
    t.deepEqual(p3.expire(), []);
    t.true(p2.contains(a));
    t.false(p2.contains('127.77.3.0'));
    t.false(p2.contains('127.77.3.7'));
    t.throws(() => parseCidr('10.0.0.0/8'), { message: /invalid VIP pool/ });
    t.throws(() => parseCidr('300.0.0.0/24'), { message: /invalid VIP pool/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('VIP pool: overlapping saves land in order — once a save resolves the file holds what was released before it was called', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-vip-'));
  try {
    const file = join(dir, 'vips.json');
    const keys = (): string[] => Object.keys((JSON.parse(readFileSync(file, 'utf8')) as { assignments: object }).assignments).sort();
    for (let round = 0; round < 50; round++) {
      const p = new VipPool({ pool: '127.77.4.0/24', stateFile: file, graceMs: 1000 });
      for (const k of ['a', 'b', 'c']) p.assign(k, 0);
      p.release(new Set(['a', 'b']), 0); // c starts its grace period
      const first = p.save(); // under way: c still reserved (inactive)
      t.deepEqual(p.release(new Set(['a', 'b']), 5000).map((f) => f.key), ['c']);
      await p.save(); // c given back: this state must be on disk now, whatever the first write does
      t.deepEqual(keys(), ['a', 'b'], `round ${round}`);
      await first;
      t.deepEqual(keys(), ['a', 'b'], `round ${round}, after the first write`);
      rmSync(file);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kv under the prefix and operator settings reach the view', (t) => {
  const v = buildView(snap([inst('web')], { 'app/x': '1' }), opts({ settings: { l7Bind: ':80' } }), assign());
  t.is(v.kv['app/x'], '1');
  t.is(v.settings.l7Bind, ':80');
  t.is(Object.getPrototypeOf(v.service), null);
});

test('name layout: dash (default), dot and dot-bare; the other forms stay aliases; a service without a tenant keeps <service>.<domain>', (t) => {
  const list = [inst('redis', { tags: ['gantry.tenant=developer1'] }), inst('web')];
  const dash = buildView(snap(list), opts(), assign());
  t.deepEqual(dash.groups.map((g) => [g.fqdn, g.aliases]), [['developer1-redis.gantry.test', ['developer1.redis.gantry.test', 'developer1.redis']], ['web.gantry.test', []]]);
  const dot = buildView(snap(list), opts({ nameLayout: 'dot' }), assign());
  t.deepEqual(dot.groups.map((g) => [g.fqdn, g.aliases]), [['developer1.redis.gantry.test', ['developer1-redis.gantry.test', 'developer1.redis']], ['web.gantry.test', []]]);
  const bare = buildView(snap(list), opts({ nameLayout: 'dot-bare' }), assign());
  const redis = bare.groups.find((g) => g.service === 'redis')!;
  t.is(redis.fqdn, 'developer1.redis');
  t.is(redis.backend, 'l7_developer1.redis');
  t.deepEqual(redis.aliases, ['developer1-redis.gantry.test', 'developer1.redis.gantry.test']);
  t.deepEqual(bare.hostMap.filter((r) => r.backend === 'l7_developer1.redis').map((r) => r.host).sort(), ['developer1-redis.gantry.test', 'developer1.redis', 'developer1.redis.gantry.test']);
});

test('spare backends: a new L7 service takes a spare (host map to it), overflow when none is left or it has paths; a compact layout grows the pool', (t) => {
  const routes = new RouteTable({ spares: 2 });
  const a = assign();
  const view = (list: CatalogInstance[], compact = false): ReturnType<typeof buildView> => {
    const router = routes.router(compact);
    const v = buildView(snap(list), opts({ allowHostSuffixes: ['example.com'] }), { ...a, routes: router });
    router.used(new Set(v.http.map((g) => g.key)));
    return v;
  };
  const web = inst('web');
  // nothing committed yet (no config known to run): every group in its own backend, the spares empty
  const v0 = view([web]);
  t.deepEqual(v0.l7Backends.map((g) => g.backend), ['l7_web.gantry.test']);
  t.deepEqual(v0.spares.map((s) => [s.backend, s.group]), [['gantry_spare_1', null], ['gantry_spare_2', null]]);
  routes.commit(v0.l7Backends.map((g) => g.key), v0.spares.length);
  const b = inst('b-svc', { tags: ['gantry.host=b.example.com'] });
  const v1 = view([web, b]);
  t.deepEqual(v1.l7Backends.map((g) => g.backend), ['l7_web.gantry.test']);
  t.deepEqual(v1.spares.map((s) => [s.backend, s.group]), [['gantry_spare_1', 'b-svc'], ['gantry_spare_2', null]]);
  t.deepEqual(v1.spares[0]!.slots.filter((s) => s.address).map((s) => s.port), [b.port]);
  t.deepEqual(v1.hostMap, [
    { host: 'b-svc.gantry.test', backend: 'gantry_spare_1' },
    { host: 'b.example.com', backend: 'gantry_spare_1' },
    { host: 'web.gantry.test', backend: 'l7_web.gantry.test' },
  ]);
  t.deepEqual(v1.overflow, []);
  // a service with a path route needs ACLs in the config: overflow; so does one past the last spare
  const c = inst('c-svc');
  const p = inst('p-svc', { tags: ['gantry.path=/p'] });
  const d = inst('d-svc');
  const v2 = view([web, b, c, p, d]);
  t.deepEqual(v2.spares.map((s) => s.group), ['b-svc', 'c-svc']);
  t.deepEqual(v2.overflow.sort(), ['d-svc', 'p-svc']);
  t.false(v2.http.some((g) => g.service === 'd-svc'), 'an overflow group is not served until the reload');
  // the reload writes a compact layout: every group its own backend, the pool doubled and empty
  const v3 = view([web, b, c, p, d], true);
  t.deepEqual(v3.l7Backends.map((g) => g.backend).sort(), ['l7_b-svc.gantry.test', 'l7_c-svc.gantry.test', 'l7_d-svc.gantry.test', 'l7_p-svc.gantry.test', 'l7_web.gantry.test']);
  t.deepEqual(v3.spares.map((s) => [s.backend, s.group, s.slots.some((x) => x.address)]), [1, 2, 3, 4].map((i) => [`gantry_spare_${i}`, null, false]));
  routes.commit(v3.l7Backends.map((g) => g.key), v3.spares.length);
  // a service that leaves gives its spare back
  const e = inst('e-svc');
  const v4 = view([web, b, c, p, d, e]);
  t.is(v4.spares.find((s) => s.group === 'e-svc')?.backend, 'gantry_spare_1');
  const v5 = view([web, b, c, p, d]);
  t.deepEqual(v5.spares.map((s) => s.group), [null, null, null, null]);
  t.false(v5.spares[0]!.slots.some((s) => s.address), 'its servers are emptied');
});

test('spare pool sized by the catalog: at least perHundred spares per 100 L7 services at a compact layout (the first render too); never below --spare-backends, none when that is 0', (t) => {
  const layout = (spares: number, perHundred: number, services: number): { first: number; compact: number; inSpare: number } => {
    const routes = new RouteTable({ spares, perHundred });
    const a = assign();
    const list = Array.from({ length: services }, (_, i) => inst(`s${i}`));
    const view = (l: CatalogInstance[], compact = false): ReturnType<typeof buildView> => {
      const router = routes.router(compact);
      const v = buildView(snap(l), opts(), { ...a, routes: router });
      router.used(new Set(v.http.map((g) => g.key)));
      return v;
    };
    const v0 = view(list);
    routes.commit(v0.l7Backends.map((g) => g.key), v0.spares.length);
    // a new service between reloads takes one of the pool's spares; the compact layout keeps the size
    const v1 = view([...list, inst('newcomer')]);
    const inSpare = v1.spares.filter((s) => s.group !== null).length;
    const v2 = view([...list, inst('newcomer')], true);
    return { first: v0.spares.length, compact: v2.spares.length, inSpare };
  };
  t.deepEqual(layout(2, 10, 45), { first: 5, compact: 5, inSpare: 1 }, '10 per 100 of 45 services: 5 spares (rounded up)');
  t.deepEqual(layout(2, 10, 46), { first: 5, compact: 5, inSpare: 1 }, '46 + 1 own groups at the compact layout: still 5');
  t.deepEqual(layout(8, 10, 30), { first: 8, compact: 8, inSpare: 1 }, 'the minimum wins over a smaller share');
  t.deepEqual(layout(0, 10, 30), { first: 0, compact: 0, inSpare: 0 }, '--spare-backends 0: no pool at all');
});

test('a service with its own backend that leaves the catalog: the backend stays (retired, emptied, out of the map and the groups); back, it fills it again; the compact layout drops it', (t) => {
  const routes = new RouteTable({ spares: 1 });
  const a = assign();
  const view = (list: CatalogInstance[], compact = false): ReturnType<typeof buildView> => {
    const router = routes.router(compact);
    const v = buildView(snap(list), opts(), { ...a, routes: router });
    router.used(new Set(v.http.map((g) => g.key)));
    return v;
  };
  const web = inst('web');
  const gone = inst('gone');
  const pathy = inst('pathy', { tags: ['gantry.path=/p'] });
  const v0 = view([web, gone, pathy], true);
  routes.commit(v0.l7Backends.map((g) => g.key), v0.spares.length);
  const v1 = view([web, pathy]);
  t.deepEqual(v1.l7Backends.map((g) => g.backend), ['l7_gone.gantry.test', 'l7_pathy.gantry.test', 'l7_web.gantry.test'], 'same backends, same order');
  t.deepEqual(v1.retired.map((g) => g.key), ['gone']);
  t.false(v1.retired[0]!.slots.some((s) => s.address), 'its servers are emptied');
  t.false(v1.hostMap.some((r) => r.backend === 'l7_gone.gantry.test'), 'its names leave the map');
  t.false(v1.groups.some((g) => g.key === 'gone') || v1.http.some((g) => g.key === 'gone'));
  t.deepEqual(v1.overflow, []);
  // the skeleton (what decides runtime against reload) is the one of the view it left
  t.deepEqual(skeletonOf(v1).l7Backends.map((g) => [g.backend, g.fqdn, g.slots.length]), skeletonOf(v0).l7Backends.map((g) => [g.backend, g.fqdn, g.slots.length]));
  // back: its own backend again
  const v2 = view([web, gone, pathy]);
  t.deepEqual(v2.retired, []);
  t.is(v2.groups.find((g) => g.key === 'gone')!.backend, 'l7_gone.gantry.test');
  t.true(v2.hostMap.some((r) => r.host === 'gone.gantry.test' && r.backend === 'l7_gone.gantry.test'));
  // a group with path routes has ACLs in the frontend: not retired (its removal reloads)
  const v3 = view([web, gone]);
  t.deepEqual(v3.retired, []);
  t.false(v3.l7Backends.some((g) => g.key === 'pathy'));
  // the compact layout of a reload drops retired backends
  view([web]);
  const v4 = view([web], true);
  t.deepEqual(v4.l7Backends.map((g) => g.backend), ['l7_web.gantry.test']);
  t.deepEqual(v4.retired, []);
});

test('host names from tags: only inside --domain or --allow-host-suffix; two claims: the earliest registration (CreateIndex) keeps it', (t) => {
  const skips: Skip[] = [];
  const list = [
    inst('zeta', { id: 'zeta-1', tags: ['gantry.host=shop.gantry.test', 'gantry.host=api.example.com', 'gantry.host=bank.evil.org'], createIndex: 10 }),
    inst('alpha', { id: 'alpha-1', tags: ['gantry.host=shop.gantry.test', 'gantry.host=zeta.gantry.test'], createIndex: 20 }),
  ];
  const v = buildView(snap(list), opts({ allowHostSuffixes: ['example.com'] }), assign(), (s) => skips.push(s));
  const zeta = v.http.find((g) => g.service === 'zeta')!;
  const alpha = v.http.find((g) => g.service === 'alpha')!;
  t.deepEqual(zeta.hosts, ['api.example.com', 'shop.gantry.test'], 'the earlier registration keeps shop, although alpha sorts first');
  t.deepEqual(alpha.hosts, [], "a generated name (zeta's) is never taken by a tag");
  const outside = skips.find((s) => s.reason === 'host_outside')!;
  t.regex(outside.detail, /host bank\.evil\.org of service zeta instance zeta-1 is outside --domain gantry\.test and --allow-host-suffix example\.com; refused/);
  t.deepEqual(v.hostConflicts.map((c) => [c.host, c.kept.service, c.kept.createIndex, c.refused.map((r) => [r.service, r.instance, r.createIndex])]), [['shop.gantry.test', 'zeta', 10, [['alpha', 'alpha-1', 20]]]]);
  t.regex(skips.find((s) => s.reason === 'host_conflict')!.detail, /kept by service zeta instance zeta-1 \(CreateIndex 10\), the earlier registration/);
  // without --allow-host-suffix, only names inside the domain
  const strict = buildView(snap(list), opts(), assign());
  t.deepEqual(strict.http.find((g) => g.service === 'zeta')!.hosts, ['shop.gantry.test']);
});
