// The Kubernetes source through the reconciler into a real Consul, against a
// real kube-apiserver. No kubelet or controllers run: the test writes Services,
// EndpointSlices and Nodes as the control plane would.
import test from 'ava';
import { CoreV1Api, DiscoveryV1Api, type V1EndpointSlice, type V1Service } from '@kubernetes/client-node';
import { createConsul, createLogger, asOwnerId, type ConsulClient } from '@gantry/core';
import { startKube, type KubeEngine } from '../../test/harness/engines/kube.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { KubernetesSource } from '../src/sources/kubernetes/source.ts';
import { defaultKubeSyncOptions } from '../src/sources/kubernetes/mapping.ts';
import { ConsulCatalogSink } from '../src/sinks/consul-catalog.ts';
import { Reconciler } from '../src/reconciler.ts';

const track = manageEngines(test);
let kube: KubeEngine;
let consulEngine: ConsulEngine;
let consul: ConsulClient;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
const ac = new AbortController();
const log = createLogger({ component: 'test', level: 'warn' });

interface HealthEntry { Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[]; Meta: Record<string, string> }; Checks: Array<{ CheckID: string; Status: string }> }

async function health(name: string): Promise<HealthEntry[]> {
  const r = await consul.request<HealthEntry[]>('GET', `/v1/health/service/${name}`);
  return r.body ?? [];
}
const statusOf = (e: HealthEntry): string => e.Checks.find((c) => c.CheckID.startsWith('gantry:'))?.Status ?? 'none';

function slice(ns: string, svc: string, name: string, endpoints: Array<{ ip: string; ready?: boolean; terminating?: boolean; node?: string; pod?: string }>, port = 8080, portName = 'http'): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    ports: [{ name: portName, port, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.node ? { nodeName: e.node } : {}),
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace: ns } } : {}),
    })),
  };
}

function service(ns: string, name: string, spec: V1Service['spec'], annotations: Record<string, string> = {}): V1Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, annotations }, spec };
}

test.before(async () => {
  [kube, consulEngine] = await Promise.all([startKube(), startConsul()]);
  track('kube', kube);
  track('consul', consulEngine);
  consul = createConsul({ addr: consulEngine.addr });
  const kc = kube.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  for (const ns of ['shop', 'other', 'kube-system']) {
    if (ns !== 'kube-system') await core.createNamespace({ body: { metadata: { name: ns } } });
  }
  await core.createNode({ body: { metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'ExternalIP', address: '198.51.100.10' }] } } });
  await core.createNode({ body: { metadata: { name: 'node-b' }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.11' }] } } });
  // objects present before the registrator starts
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'orders', { type: 'ClusterIP', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, { 'consul.hashicorp.com/service-tags': 'v1,blue' }) });
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('shop', 'orders', 'orders-1', [{ ip: '10.1.0.1', node: 'node-a', pod: 'orders-a' }, { ip: '10.1.0.2', ready: false, node: 'node-b', pod: 'orders-b' }]) });

  const owner = asOwnerId('kubernetes@c1');
  const source = new KubernetesSource({ ...defaultKubeSyncOptions(owner, 'c1'), kc, log });
  await source.start(ac.signal);
  const reconciler = new Reconciler({ source, sink: new ConsulCatalogSink({ consul, node: 'k8s-sync-c1' }), owner, log, resyncMs: 5000 });
  void reconciler.run(ac.signal);
});

test.after.always(() => {
  ac.abort();
  consul?.close();
});

test('ClusterIP: one instance per endpoint, passing while ready, critical while not; tags and meta', async (t) => {
  const entries = await waitUntil('orders in consul', async () => {
    const e = await health('orders');
    return e.length === 2 ? e : undefined;
  }, { timeoutMs: 15_000 });
  const byAddr = new Map(entries.map((e) => [e.Service.Address, e]));
  const a = byAddr.get('10.1.0.1')!;
  const b = byAddr.get('10.1.0.2')!;
  t.is(a.Service.Port, 8080);
  t.is(statusOf(a), 'passing');
  t.is(statusOf(b), 'critical');
  t.deepEqual([...a.Service.Tags].sort(), ['blue', 'k8s', 'v1']);
  t.like(a.Service.Meta, { 'gantry-owner': 'kubernetes@c1', 'gantry-source': 'kubernetes', 'k8s-cluster': 'c1', 'k8s-namespace': 'shop', 'k8s-service': 'orders', 'k8s-pod': 'orders-a', 'k8s-node': 'node-a' });
});

test('readiness flips and terminating endpoints are removed', async (t) => {
  await waitUntil('orders synced', async () => (await health('orders')).length === 2, { timeoutMs: 15_000 });
  await discovery.replaceNamespacedEndpointSlice({ name: 'orders-1', namespace: 'shop', body: slice('shop', 'orders', 'orders-1', [{ ip: '10.1.0.1', ready: false }, { ip: '10.1.0.2', ready: true }]) });
  await waitUntil('flipped', async () => {
    const e = await health('orders');
    const s = new Map(e.map((x) => [x.Service.Address, statusOf(x)]));
    return s.get('10.1.0.1') === 'critical' && s.get('10.1.0.2') === 'passing';
  }, { timeoutMs: 15_000 });
  await discovery.replaceNamespacedEndpointSlice({ name: 'orders-1', namespace: 'shop', body: slice('shop', 'orders', 'orders-1', [{ ip: '10.1.0.1', ready: false, terminating: true }, { ip: '10.1.0.2', ready: true }]) });
  const left = await waitUntil('terminating removed', async () => {
    const e = await health('orders');
    return e.length === 1 ? e : undefined;
  }, { timeoutMs: 15_000 });
  t.is(left[0]!.Service.Address, '10.1.0.2');
});

test('NodePort, LoadBalancer, externalIPs, ExternalName and headless Services', async (t) => {
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'np', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }) });
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('shop', 'np', 'np-1', [{ ip: '10.2.0.1', node: 'node-a' }, { ip: '10.2.0.2', node: 'node-b' }]) });
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 443 }] }) });
  await core.replaceNamespacedServiceStatus({ name: 'lb', namespace: 'shop', body: { ...service('shop', 'lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 443 }] }), metadata: { name: 'lb', namespace: 'shop', resourceVersion: (await core.readNamespacedService({ name: 'lb', namespace: 'shop' })).metadata?.resourceVersion }, status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }, { hostname: 'lb.example.com' }] } } } });
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'ext', { type: 'ClusterIP', ports: [{ name: 'http', port: 8443 }], externalIPs: ['203.0.113.9'] }) });
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'legacy-db', { type: 'ExternalName', externalName: 'db.legacy.example.com', ports: [{ name: 'pg', port: 5432 }] }) });
  await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'cache', { clusterIP: 'None', ports: [{ name: 'redis', port: 6379 }] }) });
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('shop', 'cache', 'cache-1', [{ ip: '10.3.0.1' }, { ip: '10.3.0.2' }, { ip: '10.3.0.3' }], 6379, 'redis') });

  const np = await waitUntil('nodeport', async () => { const e = await health('np'); return e.length === 2 ? e : undefined; }, { timeoutMs: 15_000 });
  // ExternalFirst: node-a's external IP, node-b has only an internal one
  t.deepEqual(np.map((e) => `${e.Service.Address}:${e.Service.Port}`).sort(), ['192.0.2.11:30080', '198.51.100.10:30080']);
  const lb = await waitUntil('lb', async () => { const e = await health('lb'); return e.length === 2 ? e : undefined; }, { timeoutMs: 15_000 });
  t.deepEqual(lb.map((e) => e.Service.Address).sort(), ['203.0.113.7', 'lb.example.com']);
  const ext = await waitUntil('externalIPs', async () => { const e = await health('ext'); return e.length === 1 ? e : undefined; }, { timeoutMs: 15_000 });
  t.is(`${ext[0]!.Service.Address}:${ext[0]!.Service.Port}`, '203.0.113.9:8443');
  const en = await waitUntil('externalname', async () => { const e = await health('legacy-db'); return e.length === 1 ? e : undefined; }, { timeoutMs: 15_000 });
  t.is(en[0]!.Service.Address, 'db.legacy.example.com');
  const headless = await waitUntil('headless', async () => { const e = await health('cache'); return e.length === 3 ? e : undefined; }, { timeoutMs: 15_000 });
  t.deepEqual(headless.map((e) => e.Service.Port), [6379, 6379, 6379]);
});

test('namespace deny list, service-sync off, and an invalid annotation: reported as an Event, the rest sync', async (t) => {
  await core.createNamespacedService({ namespace: 'kube-system', body: service('kube-system', 'sysdns', { type: 'ExternalName', externalName: 'x.example.com' }) });
  await core.createNamespacedService({ namespace: 'other', body: service('other', 'quiet', { type: 'ExternalName', externalName: 'q.example.com' }, { 'gantry.io/service-sync': 'false' }) });
  await core.createNamespacedService({ namespace: 'other', body: service('other', 'broken', { type: 'ExternalName', externalName: 'b.example.com' }, { 'consul.hashicorp.com/service-weight': 'heavy' }) });
  await core.createNamespacedService({ namespace: 'other', body: service('other', 'fine', { type: 'ExternalName', externalName: 'f.example.com' }, { 'consul.hashicorp.com/service-name': 'fine-renamed', 'consul.hashicorp.com/service-meta-team': 'payments' }) });
  const fine = await waitUntil('fine', async () => { const e = await health('fine-renamed'); return e.length === 1 ? e : undefined; }, { timeoutMs: 15_000 });
  t.is(fine[0]!.Service.Meta.team, 'payments');
  const events = await waitUntil('event', async () => {
    const list = await core.listNamespacedEvent({ namespace: 'other', fieldSelector: 'involvedObject.name=broken' });
    return list.items.length ? list.items : undefined;
  }, { timeoutMs: 15_000 });
  t.is(events[0]!.reason, 'InvalidAnnotation');
  t.regex(events[0]!.message ?? '', /service-weight="heavy": expected a whole number/);
  t.is((await health('broken')).length, 0);
  t.is((await health('quiet')).length, 0);
  t.is((await health('sysdns')).length, 0);
});
