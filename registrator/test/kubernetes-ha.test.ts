// gantry registrator --kubernetes as real processes: two replicas of one
// cluster and a second cluster, all into one Consul. Leader SIGKILLed while
// endpoints change, apiserver restart, Consul restart.
import test from 'ava';
import { CoreV1Api, DiscoveryV1Api, type V1EndpointSlice } from '@kubernetes/client-node';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startKube, type KubeEngine } from '../../test/harness/engines/kube.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';

const track = manageEngines(test);
let a: KubeEngine;
let b: KubeEngine;
let consulEngine: ConsulEngine;
let consul: ConsulClient;
const replicas: GantryProcess[] = [];

const slice = (name: string, ips: string[]): V1EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
  metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
});

async function seed(kube: KubeEngine, ips: string[]): Promise<{ core: CoreV1Api; discovery: DiscoveryV1Api }> {
  const kc = kube.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'web', namespace: 'shop' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } } });
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('web-1', ips) });
  return { core, discovery };
}

/** address set of service web, per cluster */
async function web(): Promise<Record<string, string[]>> {
  const r = await consul.request<Array<{ Service: { Address: string; Meta: Record<string, string> } }>>('GET', '/v1/health/service/web');
  const out: Record<string, string[]> = {};
  for (const e of r.body ?? []) (out[e.Service.Meta['k8s-cluster']!] ??= []).push(e.Service.Address);
  for (const k of Object.keys(out)) out[k]!.sort();
  return out;
}

async function isLeader(g: GantryProcess): Promise<boolean> {
  const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
  return /^gantry_registrator_leader\{[^}]*\} 1$/m.test(text);
}

const registrator = (kube: KubeEngine, cluster: string) => startGantry('registrator', [
  '--no-docker', '--kubernetes', '--kubeconfig', kube.kubeconfigPath, '--k8s-cluster', cluster, '--resync', '3s', '--k8s-leader-ttl', '2s',
], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });

let clusterA: { core: CoreV1Api; discovery: DiscoveryV1Api };
let clusterB: { core: CoreV1Api; discovery: DiscoveryV1Api };

test.before(async () => {
  [a, b, consulEngine] = await Promise.all([startKube(), startKube(), startConsul()]);
  track('kube-a', a);
  track('kube-b', b);
  track('consul', consulEngine);
  consul = createConsul({ addr: consulEngine.addr });
  clusterA = await seed(a, ['10.1.0.1', '10.1.0.2']);
  clusterB = await seed(b, ['10.2.0.1']);
  for (const [kube, name] of [[a, 'a'], [a, 'a'], [b, 'b']] as const) {
    const g = await registrator(kube, name);
    replicas.push(g);
    track(`registrator-${name}-${replicas.length}`, g);
  }
});

test.after.always(() => consul?.close());

test.serial('two clusters share one Consul; one leader per cluster', async (t) => {
  const got = await waitUntil('both clusters', async () => {
    const w = await web();
    return w.a?.length === 2 && w.b?.length === 1 ? w : undefined;
  }, { timeoutMs: 30_000 });
  t.deepEqual(got, { a: ['10.1.0.1', '10.1.0.2'], b: ['10.2.0.1'] });
  const leaders = await waitUntil('one leader for a', async () => {
    const l = await Promise.all(replicas.slice(0, 2).map(isLeader));
    return l.filter(Boolean).length === 1 ? l : undefined;
  }, { timeoutMs: 15_000 });
  t.is(leaders.filter(Boolean).length, 1);
  t.true(await isLeader(replicas[2]!));
  // cluster b's change never touches cluster a's records
  await clusterB.discovery.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: 'shop', body: slice('web-1', []) });
  await waitUntil('b emptied', async () => (await web()).b === undefined, { timeoutMs: 15_000 });
  t.deepEqual((await web()).a, ['10.1.0.1', '10.1.0.2']);
});

test.serial('leader SIGKILLed while endpoints change: the follower takes over, no orphan, none missing', async (t) => {
  const [r1, r2] = replicas as [GantryProcess, GantryProcess];
  const leader = (await isLeader(r1)) ? r1 : r2;
  const follower = leader === r1 ? r2 : r1;
  await leader.kill();
  await clusterA.discovery.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: 'shop', body: slice('web-1', ['10.1.0.2', '10.1.0.3', '10.1.0.4']) });
  await waitUntil('follower leads', () => isLeader(follower), { timeoutMs: 20_000 });
  const got = await waitUntil('converged', async () => {
    const w = await web();
    return w.a?.join() === '10.1.0.2,10.1.0.3,10.1.0.4' ? w : undefined;
  }, { timeoutMs: 20_000 });
  t.deepEqual(got.a, ['10.1.0.2', '10.1.0.3', '10.1.0.4']);
  const following = (): number => leader.logs().filter((l) => l.msg === 'following: another replica holds the leader lock').length;
  const before = following();
  await leader.restart(); // back as a follower: it says so once it has read the lock held by the other
  await waitUntil('the restarted replica follows', async () => following() > before, { timeoutMs: 15_000 });
  t.false(await isLeader(leader));
  t.true(await isLeader(follower));
});

test.serial('apiserver restarted: informers reconnect and changes made after it flow', async (t) => {
  await a.restart();
  await clusterA.discovery.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: 'shop', body: slice('web-1', ['10.1.0.9']) });
  const got = await waitUntil('after restart', async () => { const w = await web(); return w.a?.join() === '10.1.0.9' ? w : undefined; }, { timeoutMs: 30_000 });
  t.deepEqual(got.a, ['10.1.0.9']);
});

test.serial('Consul restarted (dev agent: the catalog is lost): everything is back within resync + 5 s', async (t) => {
  await clusterB.discovery.replaceNamespacedEndpointSlice({ name: 'web-1', namespace: 'shop', body: slice('web-1', ['10.2.0.5']) });
  await waitUntil('b back', async () => (await web()).b?.join() === '10.2.0.5', { timeoutMs: 15_000 });
  await consulEngine.kill();
  await consulEngine.restart();
  const got = await waitUntil('restored', async () => {
    const w = await web();
    return w.a?.join() === '10.1.0.9' && w.b?.join() === '10.2.0.5' ? w : undefined;
  }, { timeoutMs: 3000 + 5000 + 10_000 });
  t.deepEqual(got, { a: ['10.1.0.9'], b: ['10.2.0.5'] });
});
