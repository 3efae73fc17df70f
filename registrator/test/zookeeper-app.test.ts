// `gantry registrator --zookeeper … --zk-layout both` against a real ZooKeeper
// and a real Consul: a Dubbo 3 provider registered by Curator's own
// ServiceDiscovery (Java) and a Spring Cloud Zookeeper instance become Consul
// instances named by their app; a metadata change (Dubbo 3 updates its
// revision with setData) reaches Meta; hostile JSON is reported with its path
// and skipped; Dubbo 2 interface nodes are still imported; a stopped provider
// is deregistered.
import test from 'ava';
import { connectZk } from '../../test/harness/engines/zookeeper-client.ts';
import { startCuratorProvider } from '../../test/harness/engines/zookeeper-consumer.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines, consulWithZooKeeper } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { encodeNodeName } from '../src/sources/zookeeper/dubbo-url.ts';

const track = manageEngines(test);
const fx = consulWithZooKeeper(test, track);

interface CatalogEntry { ServiceID: string; ServiceAddress: string; ServicePort: number; ServiceTags: string[]; ServiceMeta: Record<string, string> }
const catalog = async (name: string): Promise<CatalogEntry[]> => (await fx.consul.request<CatalogEntry[]>('GET', `/v1/catalog/service/${name}`)).body ?? [];

const SPRING = (address: string, port: number, zone: string): string => JSON.stringify({
  name: 'billing', id: '6e2e7b1c-8a3f-4c55-9d1e-0f6b2b7a9c11', address, port, sslPort: null,
  payload: { '@class': 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance', id: 'billing-1', name: 'billing', metadata: { instance_status: 'UP', zone } },
  registrationTimeUTC: 1600000000000, serviceType: 'DYNAMIC',
  uriSpec: { parts: [{ value: 'scheme', variable: true }, { value: '://', variable: false }, { value: 'address', variable: true }, { value: ':', variable: false }, { value: 'port', variable: true }] },
});


test('--zk-layout both: Curator ServiceDiscovery (Dubbo 3) and Spring Cloud instances imported by app; metadata changes applied; hostile JSON reported with its path; a stopped provider deregistered', async (t) => {
  const c = await connectZk(fx.zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => c.close());
  const dubbo3 = await startCuratorProvider(fx.zk.connectString, {
    basePath: '/services', app: 'orders', id: '10.4.0.7:20880', address: '10.4.0.7', port: 20880,
    metadata: { 'dubbo.metadata.revision': 'r1', 'dubbo.endpoints': '[{"port":20880,"protocol":"dubbo"}]' },
  });
  t.teardown(() => dubbo3.stop());
  await c.mkdirp('/services/billing');
  await c.create('/services/billing/6e2e7b1c-8a3f-4c55-9d1e-0f6b2b7a9c11', 'ephemeral', SPRING('10.4.0.5', 8080, 'eu-1'));
  // hostile: not JSON, an address with a newline and a template, a port out of range, a 10 KB metadata value
  await c.mkdirp('/services/evil');
  await c.create('/services/evil/not-json', 'ephemeral', '{"address": "10.4.0.9", "port": ');
  await c.create('/services/evil/newline', 'ephemeral', JSON.stringify({ address: '10.4.0.9\nbackend x {{range}}', port: 1 }));
  await c.create('/services/evil/port', 'ephemeral', JSON.stringify({ address: '10.4.0.9', port: 65536 }));
  await c.create('/services/evil/big', 'ephemeral', JSON.stringify({ address: '10.4.0.10', port: 2, payload: { metadata: { note: 'x'.repeat(10_000), ok: 'yes' } } }));
  // a Dubbo 2 interface node next to them
  await c.mkdirp('/dubbo/com.acme.Stock/providers');
  await c.create(`/dubbo/com.acme.Stock/providers/${encodeNodeName('dubbo://10.4.0.11:20881/com.acme.Stock?application=stock&interface=com.acme.Stock&side=provider')}`);

  const g = await startGantry('registrator', [
    '--docker=false', '--consul-addr', fx.engine.addr, '--zookeeper', fx.zk.connectString, '--zk-name', 'apps', '--zk-layout', 'both',
    '--zk-leader-ttl', '2s', '--resync', '30s', '--zk-export=false',
  ]);
  track('registrator', g);

  const orders = await waitUntil('orders in Consul', async () => { const l = await catalog('orders'); return l.length ? l : undefined; }, { timeoutMs: 30_000 });
  t.like(orders[0], { ServiceAddress: '10.4.0.7', ServicePort: 20880, ServiceTags: ['dubbo', 'dubbo3'] });
  t.like(orders[0]!.ServiceMeta, {
    'gantry-owner': 'zookeeper@apps', 'gantry-source': 'zookeeper', 'gantry-origin': dubbo3.path, 'zk-format': 'dubbo3', 'zk-app': 'orders',
    dubbo_metadata_revision: 'r1', dubbo_endpoints: '[{"port":20880,"protocol":"dubbo"}]',
  });
  const billing = await waitUntil('billing in Consul', async () => { const l = await catalog('billing'); return l.length ? l : undefined; });
  t.like(billing[0], { ServiceAddress: '10.4.0.5', ServicePort: 8080, ServiceTags: ['spring-cloud'] });
  t.like(billing[0]!.ServiceMeta, { zone: 'eu-1', instance_status: 'UP', 'zk-format': 'spring-cloud' });
  await waitUntil('the interface-layout provider too', async () => (await catalog('com-acme-stock')).length === 1);
  const big = await waitUntil('the instance with a 10 KB metadata value, without it', async () => { const l = await catalog('evil'); return l.length ? l : undefined; });
  t.is(big.length, 1, 'only the valid evil instance');
  t.like(big[0], { ServiceAddress: '10.4.0.10', ServicePort: 2 });
  t.is(big[0]!.ServiceMeta.ok, 'yes');
  t.false('note' in big[0]!.ServiceMeta);

  // every hostile node named with its path and reason, one line each
  const problems = await waitUntil('problems logged', async () => {
    const p = g.logs().filter((l) => l.msg === 'zookeeper: application instance node refused').map((l) => String(l.problem));
    return p.length >= 4 ? p : undefined;
  });
  t.true(problems.some((p) => p.startsWith('/services/evil/not-json: data is not JSON')), problems.join('\n'));
  t.true(problems.some((p) => p.startsWith('/services/evil/newline: address:') && p.includes('not an IP address')));
  t.true(problems.some((p) => p.startsWith('/services/evil/port: port')));
  t.true(problems.some((p) => p.startsWith('/services/evil/big: metadata "note"') && p.includes('dropped; the instance is imported')));
  t.false(problems.some((p) => p.includes('\n')));

  // Dubbo 3 updates its instance's metadata in place (setData): Meta follows
  await new Promise<void>((resolve, reject) => {
    c.raw.getData(dubbo3.path, (err, data) => {
      if (err) return reject(err instanceof Error ? err : new Error(String(err)));
      const doc = JSON.parse(data.toString()) as { payload: { metadata: Record<string, string> } };
      doc.payload.metadata['dubbo.metadata.revision'] = 'r2';
      c.raw.setData(dubbo3.path, Buffer.from(JSON.stringify(doc)), -1, (e) => (e ? reject(e instanceof Error ? e : new Error(String(e))) : resolve()));
    });
  });
  await waitUntil('revision r2 in Meta', async () => (await catalog('orders'))[0]?.ServiceMeta.dubbo_metadata_revision === 'r2', { timeoutMs: 30_000 });
  // a second Spring Cloud instance appears, the Curator provider stops (unregisters): both seen
  await c.create('/services/billing/second', 'ephemeral', SPRING('10.4.0.6', 8080, 'eu-2'));
  await waitUntil('two billing instances', async () => (await catalog('billing')).length === 2, { timeoutMs: 30_000 });
  await dubbo3.stop();
  await waitUntil('orders deregistered', async () => (await catalog('orders')).length === 0, { timeoutMs: 30_000 });
  const deregistered = g.logs().filter((l) => l.action === 'deregister').map((l) => String(l.service));
  t.deepEqual(deregistered, ['orders'], 'nothing else was deregistered');
});
