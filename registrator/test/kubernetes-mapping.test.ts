// Service → instances rules that need no apiserver: ports, naming, namespace filters, weights.
import test from 'ava';
import type { V1Service, V1EndpointSlice } from '@kubernetes/client-node';
import { asOwnerId } from '@gantry/core';
import { mapService, defaultKubeSyncOptions, type KubeSyncOptions } from '../src/sources/kubernetes/mapping.ts';

const o = (extra: Partial<KubeSyncOptions> = {}): KubeSyncOptions => ({ ...defaultKubeSyncOptions(asOwnerId('kubernetes@c'), 'c'), ...extra });
const svc = (annotations: Record<string, string> = {}, ns = 'shop'): V1Service => ({
  metadata: { name: 'api', namespace: ns, annotations },
  spec: { type: 'ClusterIP', ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090 }] },
});
const slices: V1EndpointSlice[] = [{
  addressType: 'IPv4', metadata: { name: 'api-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } },
  ports: [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9091 }],
  endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true } }],
}];
const instances = (s: V1Service, opts = o()) => {
  const r = mapService(s, slices, new Map(), opts);
  if (r.kind !== 'instances') throw new Error(`expected instances, got ${r.kind}`);
  return r.instances;
};

test('multi-port: the first port, every port in Meta; service-port picks one; service-per-port makes one service each', (t) => {
  const [first] = instances(svc());
  t.like(first, { name: 'api', port: 8080 });
  t.like(first!.meta, { 'port-http': '80', 'port-grpc': '9090' });
  t.like(instances(svc({ 'consul.hashicorp.com/service-port': 'grpc' }))[0], { port: 9091 });
  t.like(instances(svc({ 'gantry.io/service-port': '9090' }))[0], { port: 9091 });
  const per = instances(svc({ 'gantry.io/service-per-port': 'true' }));
  t.deepEqual(per.map((i) => `${i.name}:${i.port}`).sort(), ['api-grpc:9091', 'api-http:8080']);
  const bad = mapService(svc({ 'gantry.io/service-port': 'nope' }), slices, new Map(), o());
  t.is(bad.kind, 'error');
});

test('naming: prefix, -<namespace> suffix, service-name annotation; weights', (t) => {
  t.is(String(instances(svc(), o({ prefix: 'k8s-', namespaceSuffix: true }))[0]!.name), 'k8s-api-shop');
  t.is(String(instances(svc({ 'consul.hashicorp.com/service-name': 'public_api' }))[0]!.name), 'public-api');
  t.deepEqual(instances(svc({ 'consul.hashicorp.com/service-weight': '5' }))[0]!.weights, { passing: 5, warning: 1 });
});

test('namespaces: allow list, deny list, deny wins; default sync off needs the annotation', (t) => {
  t.is(mapService(svc({}, 'other'), slices, new Map(), o({ allowNamespaces: ['shop'] })).kind, 'skip');
  t.is(mapService(svc(), slices, new Map(), o({ allowNamespaces: ['shop'] })).kind, 'instances');
  t.is(mapService(svc(), slices, new Map(), o({ allowNamespaces: ['shop'], denyNamespaces: ['shop'] })).kind, 'skip');
  t.is(mapService(svc(), slices, new Map(), o({ defaultSync: false })).kind, 'skip');
  t.is(mapService(svc({ 'gantry.io/service-sync': 'true' }), slices, new Map(), o({ defaultSync: false })).kind, 'instances');
});

test('invalid annotations say which and why', (t) => {
  for (const [k, v, re] of [
    ['gantry.io/service-sync', 'maybe', /expected true or false/],
    ['consul.hashicorp.com/service-name', '!!!', /no letter or digit/],
    ['consul.hashicorp.com/service-tags', 'ok,bad\ntag', /control character/],
    ['consul.hashicorp.com/service-meta-consul-x', 'v', /reserved prefix/],
  ] as const) {
    const r = mapService(svc({ [k]: v }), slices, new Map(), o());
    t.is(r.kind, 'error', k);
    if (r.kind === 'error') {
      t.is(r.error.annotation, k);
      t.regex(r.error.message, re);
    }
  }
});

test('an annotation escaping changed is reported with the annotation, the original and the result; clean ones are not', (t) => {
  const r = mapService(svc({ 'consul.hashicorp.com/service-name': 'public_api\nx', 'gantry.io/service-meta-team.name': 'pay' }), slices, new Map(), o());
  if (r.kind !== 'instances') throw new Error(r.kind);
  t.deepEqual(r.escaped, [
    { annotation: 'consul.hashicorp.com/service-name', original: 'public_api\nx', result: 'public-api-x' },
    { annotation: 'gantry.io/service-meta-team.name', original: 'team.name', result: 'team_name' },
  ]);
  t.is(String(r.instances[0]!.name), 'public-api-x');
  const clean = mapService(svc({ 'gantry.io/service-name': 'orders' }), slices, new Map(), o());
  t.deepEqual(clean.kind === 'instances' ? clean.escaped : undefined, []);
  const prefixed = mapService(svc(), slices, new Map(), o({ prefix: 'k8s_' }));
  t.deepEqual(prefixed.kind === 'instances' ? prefixed.escaped : undefined, [{ annotation: 'metadata.name', original: 'k8s_api', result: 'k8s-api' }]);
});
