// Dubbo 3's application-level instances (Curator ServiceInstance JSON, also
// Spring Cloud Zookeeper's) → Consul instances: the real formats, and hostile
// data that must neither throw nor reach a record unescaped.
import test from 'ava';
import fc from 'fast-check';
import { asOwnerId, checkConsulMetaValue, checkConsulTag, escapeDnsLabel } from '@gantry/core';
import { appInstanceToInstance, type AppInstanceContext } from '../src/sources/zookeeper/app-instance.ts';

// the bytes Curator 5.4's ServiceDiscovery (JsonInstanceSerializer) wrote for Dubbo 3's ZookeeperInstance payload
const DUBBO3 = '{"name":"orders","id":"10.0.0.7:20880","address":"10.0.0.7","port":20880,"sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"10.0.0.7:20880","name":"orders","metadata":{"dubbo.metadata.revision":"abc","dubbo.endpoints":"[{\\"port\\":20880,\\"protocol\\":\\"dubbo\\"}]"}},"registrationTimeUTC":1796211498007,"serviceType":"DYNAMIC","uriSpec":null}';
// Spring Cloud Zookeeper's registration (ZookeeperInstance payload, instance_status, a uriSpec)
const SPRING = '{"name":"billing","id":"6e2e7b1c-8a3f-4c55-9d1e-0f6b2b7a9c11","address":"10.0.0.5","port":8080,"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"billing-1","name":"billing","metadata":{"instance_status":"UP","zone":"eu-1"}},"registrationTimeUTC":1600000000000,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}';

const ctx = (app: string, node: string): AppInstanceContext => ({ owner: asOwnerId('zookeeper@zk1'), appPath: `/services/${app}`, app, node });
const map = (json: string, app = 'orders', node = '10.0.0.7:20880') => appInstanceToInstance(Buffer.from(json), ctx(app, node));

test('Dubbo 3 (Curator ServiceDiscovery) and Spring Cloud Zookeeper instances: name from the app, address and port from the JSON, metadata in Meta', (t) => {
  const d = map(DUBBO3);
  if (d.kind !== 'instance') return t.fail(JSON.stringify(d));
  t.like(d.instance, { id: 'zk-app:orders:10.0.0.7:20880', name: 'orders', address: '10.0.0.7', port: 20880, tags: ['dubbo', 'dubbo3'] });
  t.deepEqual(d.instance.meta, {
    'gantry-owner': 'zookeeper@zk1', 'gantry-source': 'zookeeper', 'gantry-origin': '/services/orders/10.0.0.7:20880', 'zk-format': 'dubbo3', 'zk-app': 'orders',
    dubbo_metadata_revision: 'abc', dubbo_endpoints: '[{"port":20880,"protocol":"dubbo"}]',
  });
  t.deepEqual(d.dropped, []);
  const s = map(SPRING, 'Billing.API', '6e2e7b1c-8a3f-4c55-9d1e-0f6b2b7a9c11');
  if (s.kind !== 'instance') return t.fail(JSON.stringify(s));
  t.like(s.instance, { name: 'billing-api', address: '10.0.0.5', port: 8080, tags: ['spring-cloud'] });
  t.like(s.instance.meta, { 'zk-format': 'spring-cloud', 'zk-app': 'Billing.API', zone: 'eu-1', instance_status: 'UP' });
  // a plain Curator registration without payload; sslPort when there is no port
  const plain = map('{"name":"x","id":"1","address":"svc-1.example.org","port":null,"sslPort":8443,"payload":null}', 'x', '1');
  t.like(plain, { kind: 'instance', instance: { address: 'svc-1.example.org', port: 8443, tags: ['curator'] } });
  const v6 = map('{"address":"fd00::7","port":1}', 'x', '1');
  t.like(v6, { kind: 'instance', instance: { address: 'fd00::7' } });
});

test('instances consumers would not call are skipped: enabled false, instance_status other than UP', (t) => {
  t.like(map('{"address":"10.0.0.1","port":1,"enabled":false}'), { kind: 'skip' });
  t.like(map(SPRING.replace('"UP"', '"OUT_OF_SERVICE"'), 'billing', 'x'), { kind: 'skip', reason: 'instance_status "OUT_OF_SERVICE" (not UP)' });
});

test('hostile data: an error naming what is wrong, never a throw', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /no data/],
    ['{"address":"10.0.0.1","port":1', /not JSON/],
    ['[1,2]', /not a JSON object/],
    ['null', /not a JSON object/],
    ['{"port":1}', /address is missing/],
    ['{"address":"10.0.0.1\\nbackend x","port":1}', /address: .* is not an IP address or host name/],
    ['{"address":"{{range}}","port":1}', /not an IP address/],
    ['{"address":"10.0.0.1","port":70000}', /port "70000" is not a number in 1-65535/],
    ['{"address":"10.0.0.1","port":"80"}', /port/],
    ['{"address":"10.0.0.1","port":1.5}', /port/],
    ['{"address":"10.0.0.1","port":1,"payload":"x"}', /payload is not a JSON object/],
    ['{"address":"10.0.0.1","port":1,"payload":{"metadata":[1]}}', /metadata is not a JSON object/],
  ];
  for (const [json, reason] of cases) {
    const r = map(json);
    t.is(r.kind, 'error', json);
    if (r.kind === 'error') t.regex(r.reason, reason, json);
  }
  t.like(appInstanceToInstance(Buffer.from(DUBBO3), ctx('---', 'n')), { kind: 'error' }, 'an app name with no letter or digit');
});

test('metadata Consul cannot hold is dropped and named; the instance is kept', (t) => {
  const metadata: Record<string, unknown> = {
    'gantry-owner': 'someone-else', 'a\nb': 'ok', long: 'x'.repeat(600), ctl: 'a\u0000b', nested: { x: 1 }, '0num': 5, 'zk-format': 'fake', '...': 'v',
  };
  for (let i = 0; i < 80; i++) metadata[`k${String(i).padStart(2, '0')}`] = String(i);
  const r = map(JSON.stringify({ address: '10.0.0.1', port: 1, payload: { metadata } }));
  if (r.kind !== 'instance') return t.fail(JSON.stringify(r));
  const m = r.instance.meta;
  t.is(m['gantry-owner'], 'zookeeper@zk1', 'Gantry\'s own keys are never overwritten');
  t.is(m['zk-format'], 'curator');
  t.is(m.a_b, 'ok');
  t.is(m['0num'], '5', 'a number is kept as text');
  t.false('long' in m || 'ctl' in m || 'nested' in m);
  t.true(Object.keys(m).length <= 63, 'room left for gantry-spec within Consul\'s 64');
  for (const what of ['gantry-owner', 'long', 'ctl', 'nested', 'zk-format', 'more than']) t.true(r.dropped.some((d) => d.includes(what)), what);
});

test('any JSON-ish data: never throws; an instance has a DNS-safe name and Consul-valid tags and meta (property)', (t) => {
  const anyJson = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.record({
      address: fc.oneof(fc.constantFrom('10.0.0.1', 'fd00::1', 'a.example'), fc.string({ maxLength: 30 })),
      port: fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.string({ maxLength: 5 })),
      payload: fc.record({ metadata: fc.dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.string({ maxLength: 600 }), fc.integer(), fc.constant(null)), { maxKeys: 8 }) }),
    }).map((v) => JSON.stringify(v)),
  );
  fc.assert(fc.property(anyJson, fc.string({ minLength: 1, maxLength: 80 }), fc.string({ minLength: 1, maxLength: 80 }), (json, app, node) => {
    const r = appInstanceToInstance(Buffer.from(json), ctx(app, node));
    if (r.kind !== 'instance') return;
    const i = r.instance;
    t.true(escapeDnsLabel(i.name).ok && /^[a-z0-9-]{1,63}$/.test(i.name));
    for (const tag of i.tags) t.true(checkConsulTag(tag).ok);
    for (const [k, v] of Object.entries(i.meta)) { t.regex(k, /^[A-Za-z0-9_-]{1,128}$/); t.true(checkConsulMetaValue(v).ok, k); }
    t.true(i.port >= 1 && i.port <= 65535);
  }), { numRuns: 500 });
});
