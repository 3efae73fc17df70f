import test from 'ava';
import { CoreV1Api, DiscoveryV1Api, Watch, type V1Service } from '@kubernetes/client-node';
import { startKube } from '../harness/engines/kube.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

const service = (name: string, port: number): V1Service => ({
  metadata: { name, labels: { app: name, 'gantry.io/test': 'kube-engine' } },
  spec: { type: 'ClusterIP', selector: { app: name }, ports: [{ name: 'http', port, targetPort: port, protocol: 'TCP' }] },
});

test('kube-apiserver on its own etcd stores and watches Services and EndpointSlices, and stops without a process left', async (t) => {
  const engine = await startKube();
  track('kube-apiserver', engine);
  t.regex(engine.server, /^https:\/\/127\.0\.0\.1:\d+$/);

  const kc = engine.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const ns = 'gantry-kube';

  await core.createNamespace({ body: { metadata: { name: ns, labels: { team: 'gantry' } } } });
  const gotNs = await core.readNamespace({ name: ns });
  t.is(gotNs.metadata?.labels?.team, 'gantry');

  await core.createNamespacedService({ namespace: ns, body: service('web', 8080) });
  await discovery.createNamespacedEndpointSlice({
    namespace: ns,
    body: {
      metadata: { name: 'web-abc12', labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'gantry-test' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.1.0.5'], conditions: { ready: true }, nodeName: 'node-a', targetRef: { kind: 'Pod', name: 'web-1', namespace: ns } },
        { addresses: ['10.1.0.6'], conditions: { ready: false } },
      ],
    },
  });

  const services = await core.listNamespacedService({ namespace: ns });
  t.deepEqual(services.items.map((s) => s.metadata?.name), ['web']);
  const web = services.items[0]!;
  t.is(web.spec?.type, 'ClusterIP');
  t.deepEqual(web.spec?.selector, { app: 'web' });
  t.is(web.spec?.ports?.[0]?.port, 8080);
  t.is(web.spec?.ports?.[0]?.name, 'http');
  t.regex(web.spec?.clusterIP ?? '', /^10\.0\.\d+\.\d+$/, 'a cluster IP allocated from --service-cluster-ip-range');
  t.truthy(services.metadata?.resourceVersion);

  const slices = await discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: 'kubernetes.io/service-name=web' });
  t.is(slices.items.length, 1);
  const slice = slices.items[0]!;
  t.is(slice.metadata?.name, 'web-abc12');
  t.is(slice.addressType, 'IPv4');
  t.deepEqual(slice.ports?.map((p) => [p.name, p.port, p.protocol]), [['http', 8080, 'TCP']]);
  t.deepEqual(slice.endpoints?.map((e) => [e.addresses[0], e.conditions?.ready]), [['10.1.0.5', true], ['10.1.0.6', false]]);
  t.is(slice.endpoints?.[0]?.targetRef?.name, 'web-1');
  t.is(slice.endpoints?.[0]?.nodeName, 'node-a');

  // watch from the list's resourceVersion: only what happens after it is seen
  const events: Array<[string, string | undefined]> = [];
  let resolveAdded!: (s: V1Service) => void;
  const added = new Promise<V1Service>((resolve) => { resolveAdded = resolve; });
  const watch = new Watch(kc);
  const ctl = await watch.watch(`/api/v1/namespaces/${ns}/services`,
    { resourceVersion: services.metadata!.resourceVersion!, allowWatchBookmarks: false },
    (phase, obj: V1Service) => {
      events.push([phase, obj.metadata?.name]);
      if (phase === 'ADDED' && obj.metadata?.name === 'api') resolveAdded(obj);
    },
    (err: unknown) => { if (err && !(err instanceof Error && err.name === 'AbortError')) t.log(`watch ended: ${err instanceof Error ? err.message : JSON.stringify(err)}`); });
  let timer: NodeJS.Timeout | undefined;
  try {
    await core.createNamespacedService({ namespace: ns, body: service('api', 9090) });
    const got = await Promise.race([
      added,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ADDED event for api; saw ${JSON.stringify(events)}`)), 15_000);
      }),
    ]);
    t.is(got.spec?.ports?.[0]?.port, 9090);
    t.deepEqual(events, [['ADDED', 'api']], 'web, created before the resourceVersion, is not replayed');
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }

  const { apiserver, etcd } = engine;
  const pids = [apiserver.pid, etcd.pid];
  await engine.stop();
  for (const pid of pids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
