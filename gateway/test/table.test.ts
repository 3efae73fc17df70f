// Route specs from tags and the route table built from a catalog snapshot:
// fabio's urlprefix- syntax, gantry.host/gantry.path, <service>.<domain>,
// longest prefix, host before path, health filter, fabio weights, bad tags named.
import test from 'ava';
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
import { buildTable, parsePolicies, routeSpecs, OutlierDetector } from '@gantry/gateway';

const opts = { domain: 'gantry.test', prefix: 'urlprefix-', hostTag: 'gantry.host', pathTag: 'gantry.path', includeWarning: false };

let n = 0;
function inst(service: string, port: number, tags: string[] = [], status: CatalogInstance['status'] = 'passing', meta: Record<string, string> = {}): CatalogInstance {
  n++;
  return { key: `node\u0000${service}-${n}`, node: 'node', nodeAddress: '127.0.0.1', id: `${service}-${n}`, service, address: '127.0.0.1', port, tags, meta, createIndex: n, modifyIndex: n, status };
}

function snap(list: CatalogInstance[], kv: Record<string, string> = {}): CatalogSnapshot {
  const services = new Map<string, CatalogInstance[]>();
  for (const i of list) services.set(i.service, [...(services.get(i.service) ?? []), i]);
  return { services, kv: new Map(Object.entries(kv)), indexes: { catalog: '1', health: '1', kv: '1' }, version: 1 };
}

const build = (s: CatalogSnapshot, o = opts) => buildTable(s, parsePolicies(s.kv), new OutlierDetector({ consecutive: 5, baseEjectMs: 1000, maxEjectMs: 10_000 }), o);

test('fabio urlprefix- tags: host/path, strip, proto, weight; bad ones named and skipped', (t) => {
  const r = routeSpecs('web', ['urlprefix-api.example.com/v1 strip=/v1', 'urlprefix-/static', 'urlprefix-/x proto=https tlsskipverify=true', 'urlprefix-/w weight=0.25', 'urlprefix-:9000 proto=tcp', 'urlprefix-/y proto=grpc', 'urlprefix-bad_host!/z', 'urlprefix-/q weight=2', 'other'], {}, opts);
  t.deepEqual(r.specs.map((s) => [s.host, s.path, s.strip, s.proto, s.weight, s.tlsSkipVerify]), [
    ['web.gantry.test', '/', undefined, 'http', undefined, false],
    ['api.example.com', '/v1', '/v1', 'http', undefined, false],
    ['', '/static', undefined, 'http', undefined, false],
    ['', '/x', undefined, 'https', undefined, true],
    ['', '/w', undefined, 'http', 0.25, false],
  ]);
  t.is(r.errors.length, 4);
  t.true(r.errors.some((e) => e.includes('urlprefix-:9000') && e.includes('TCP')));
  t.true(r.errors.some((e) => e.includes('proto=\\"grpc\\"') || e.includes('grpc')));
  t.true(r.errors.some((e) => e.includes('bad_host!')));
  t.true(r.errors.some((e) => e.includes('weight=')));
});

test('a tag naming the service\'s own <service>.<domain>/ route replaces the implied one; the same route twice keeps the first and names a differing second', (t) => {
  const r = routeSpecs('tls', ['urlprefix-tls.gantry.test/ proto=https tlsskipverify=true', 'gantry.host=tls.gantry.test', 'urlprefix-/a', 'urlprefix-/a strip=/a'], {}, opts);
  t.deepEqual(r.specs.map((s) => [`${s.host}${s.path}`, s.proto, s.tlsSkipVerify, s.strip]), [
    ['tls.gantry.test/', 'https', true, undefined],
    ['/a', 'http', false, undefined],
  ]);
  t.is(r.errors.length, 2);
  t.true(r.errors.some((e) => e.includes('tls.gantry.test/') && e.includes('twice')), 'gantry.host= in plain HTTP after the https tag');
  t.true(r.errors.some((e) => e.includes('/a') && e.includes('twice')));
  // built: the instance sits in its route once, over TLS
  const { table } = build(snap([inst('tls', 1, ['urlprefix-tls.gantry.test/ proto=https'])]));
  const ups = table.lookup('tls.gantry.test', '/')!.targets[0]!.instances.map((u) => u.proto);
  t.deepEqual(ups, ['https']);
});

test('gantry.host= and gantry.path= tags (and the host meta); a service name that is no DNS label gets no domain name', (t) => {
  const r = routeSpecs('Web_App', ['gantry.host=shop.example.com', 'gantry.path=/shop', 'gantry.path=no-slash'], { 'gantry-host': 'meta.example.com' }, opts);
  t.deepEqual(r.specs.map((s) => `${s.host}${s.path}`).sort(), ['gantry.test/shop', 'meta.example.com/', 'shop.example.com/']);
  t.is(r.errors.length, 2);
  t.true(r.errors.some((e) => e.includes('Web_App')));
  t.true(r.errors.some((e) => e.includes('no-slash')));
});

test('longest prefix wins, host before path, only passing instances (warning on request)', (t) => {
  const s = snap([
    inst('root', 1, ['urlprefix-/']),
    inst('api', 2, ['urlprefix-/api']),
    inst('apiv2', 3, ['urlprefix-/api/v2']),
    inst('hosted', 4, ['urlprefix-shop.example.com/']),
    inst('hosted', 5, ['urlprefix-shop.example.com/'], 'warning'),
    inst('hosted', 6, ['urlprefix-shop.example.com/'], 'critical'),
  ]);
  const { table, errors } = build(s);
  t.deepEqual(errors, []);
  const at = (host: string, path: string) => table.lookup(host, path)?.targets[0]?.service;
  t.is(at('any.host', '/'), 'root');
  t.is(at('any.host', '/api'), 'api');
  t.is(at('any.host', '/apix'), 'api'); // fabio: string prefix
  t.is(at('any.host', '/api/v2/users'), 'apiv2');
  t.is(at('shop.example.com', '/api/v2/users'), 'hosted'); // host before path
  t.is(at('api.gantry.test', '/anything'), 'api');
  t.is(at('apiv2.gantry.test', '/'), 'apiv2');
  t.deepEqual(table.lookup('shop.example.com', '/')!.targets[0]!.instances.map((u) => u.port), [4]);
  const warn = build(s, { ...opts, includeWarning: true }).table;
  t.deepEqual(warn.lookup('shop.example.com', '/')!.targets[0]!.instances.map((u) => u.port), [4, 5]);
});

test('a route whose instances are all critical stays (503, not 404)', (t) => {
  const { table } = build(snap([inst('down', 1, ['urlprefix-/down'], 'critical')]));
  const r = table.lookup('x', '/down');
  t.truthy(r);
  t.is(r!.targets[0]!.instances.length, 0);
});

test('fabio weights: explicit shares taken, the rest split equally', (t) => {
  const { table } = build(snap([inst('v1', 1, ['urlprefix-/shop']), inst('v2', 2, ['urlprefix-/shop weight=0.2']), inst('v3', 3, ['urlprefix-/shop'])]));
  const r = table.lookup('h', '/shop')!;
  const shares = Object.fromEntries(r.targets.map((x) => [x.service, Number(x.share.toFixed(3))]));
  t.deepEqual(shares, { v1: 0.4, v2: 0.2, v3: 0.4 });
  t.is(r.cum[r.cum.length - 1], 1);
});

test('50,000 routes build and look up', (t) => {
  const list: CatalogInstance[] = [];
  for (let i = 0; i < 50_000; i++) list.push(inst(`svc${i}`, 1000 + (i % 50_000), [`urlprefix-/p${i}`]));
  const { table } = build(snap(list));
  t.is(table.routes.length, 100_000);
  t.is(table.lookup('svc49999.gantry.test', '/')?.targets[0]?.service, 'svc49999');
  t.is(table.lookup('x', '/p123/more')?.targets[0]?.service, 'svc123');
});
