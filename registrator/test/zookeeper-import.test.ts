// ZooKeeper → Consul against a real ZooKeeper and a real Consul: Dubbo 2.7
// provider nodes become Consul instances; interfaces created later are found;
// consumers, routers, configurators, disabled providers and Gantry's own nodes
// are not imported; bad node names are reported with their path and skipped;
// a ZooKeeper restart and a real session expiry deregister nothing; a connect
// a starting server accepted and never answered is tried again.
import test from 'ava';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, asOwnerId } from '@gantry/core';
import { connectZk, expireSession, type TestZkClient } from '../../test/harness/engines/zookeeper-client.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines, consulWithZooKeeper } from '../../test/harness/ava.ts';
import { waitUntil, sleep } from '../../test/harness/process.ts';
import { encodeNodeName } from '../src/sources/zookeeper/dubbo-url.ts';
import { ORIGIN_PARAM } from '../src/sources/zookeeper/mapping.ts';
import { ZkSession } from '../src/sources/zookeeper/session.ts';
import { ZooKeeperSource } from '../src/sources/zookeeper/source.ts';
import { ConsulCatalogSink } from '../src/sinks/consul-catalog.ts';
import { Reconciler } from '../src/reconciler.ts';

const track = manageEngines(test);
const fx = consulWithZooKeeper(test, track);

interface CatalogEntry { ServiceID: string; ServiceAddress: string; ServicePort: number; ServiceTags: string[]; ServiceMeta: Record<string, string>; ServiceWeights: { Passing: number } }
const catalog = async (name: string): Promise<CatalogEntry[]> => (await fx.consul.request<CatalogEntry[]>('GET', `/v1/catalog/service/${name}`)).body ?? [];
const zkServices = async (owner: string): Promise<string[]> => {
  const r = await fx.consul.request<Record<string, string[]>>('GET', '/v1/catalog/services', { query: { filter: `ServiceMeta["gantry-owner"] == "${owner}"` } });
  return Object.keys(r.body ?? {}).sort();
};

const provider = (iface: string, host: string, port: number, extra = ''): string =>
  encodeNodeName(`dubbo://${host}:${port}/${iface}?anyhost=true&application=orders&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface=${iface}&methods=place,cancel&pid=42&release=2.7.8&side=provider&timestamp=1600000000000${extra}`);

async function addProvider(c: TestZkClient, iface: string, node: string, root = '/dubbo'): Promise<string> {
  await c.mkdirp(`${root}/${iface}/providers`);
  await c.create(`${root}/${iface}/providers/${node}`);
  return `${root}/${iface}/providers/${node}`;
}


test.serial('gantry registrator --zookeeper: providers imported with Dubbo Meta; later interfaces found; non-providers, disabled, own and bad nodes skipped; a ZooKeeper restart deregisters nothing', async (t) => {
  const dubbo = await connectZk(fx.zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => dubbo.close());
  const order = await addProvider(dubbo, 'com.acme.OrderService', provider('com.acme.OrderService', '10.1.0.7', 20880, '&version=1.0.0&weight=50'));
  await dubbo.mkdirp('/dubbo/com.acme.OrderService/consumers');
  await dubbo.create(`/dubbo/com.acme.OrderService/consumers/${encodeNodeName('consumer://10.9.9.9/com.acme.OrderService?category=consumers&side=consumer')}`);
  await dubbo.mkdirp('/dubbo/com.acme.OrderService/routers');
  await dubbo.mkdirp('/dubbo/com.acme.OrderService/configurators');
  await dubbo.create(`/dubbo/com.acme.OrderService/configurators/${encodeNodeName('override://0.0.0.0/com.acme.OrderService?category=configurators&disabled=true')}`);
  await addProvider(dubbo, 'com.acme.OrderService', provider('com.acme.OrderService', '10.1.0.8', 20880, '&enabled=false'));
  await addProvider(dubbo, 'com.acme.OrderService', provider('com.acme.OrderService', '10.1.0.9', 20880, `&${ORIGIN_PARAM}=zookeeper-export@x`));
  // hostile: bad percent-encoding, a newline in the host, `{{` in the interface, a 10 KB application
  await addProvider(dubbo, 'com.acme.OrderService', 'dubbo%3A%2F%2F10.1.0.10%3A1%ZZ');
  await addProvider(dubbo, 'com.acme.OrderService', encodeNodeName('dubbo://10.1.0.11\nbackend x:1/com.acme.OrderService'));
  await addProvider(dubbo, 'com.acme.Evil', encodeNodeName('dubbo://10.1.0.12:1/{{range}}?interface={{range}}'));
  await addProvider(dubbo, 'com.acme.Big', provider('com.acme.Big', '10.1.0.13', 2, `&note=${'x'.repeat(10_000)}`));

  const g = await startGantry('registrator', [
    '--docker=false', '--consul-addr', fx.engine.addr, '--zookeeper', fx.zk.connectString, '--zk-name', 'imp',
    '--zk-session-timeout', '20s', '--zk-leader-ttl', '2s', '--resync', '2s', '--zk-export=false',
  ]);
  track('registrator', g);
  const owner = 'zookeeper@imp';

  const orders = await waitUntil('OrderService in Consul', async () => { const l = await catalog('com-acme-orderservice'); return l.length ? l : undefined; }, { timeoutMs: 30_000 });
  t.is(orders.length, 1, 'disabled, own and bad nodes are not imported');
  t.like(orders[0], { ServiceAddress: '10.1.0.7', ServicePort: 20880, ServiceWeights: { Passing: 50 } });
  t.like(orders[0]!.ServiceMeta, { 'gantry-owner': owner, 'gantry-source': 'zookeeper', 'gantry-origin': `${order.slice(0, order.lastIndexOf('/'))}#10.1.0.7:20880`, 'dubbo-interface': 'com.acme.OrderService', 'dubbo-version': '1.0.0', 'dubbo-release': '2.7.8', 'dubbo-methods': 'place,cancel', 'dubbo-application': 'orders' });
  t.true(orders[0]!.ServiceTags.includes('version=1.0.0'));
  const big = await waitUntil('the provider with a 10 KB parameter', async () => { const l = await catalog('com-acme-big'); return l.length ? l : undefined; });
  t.is(big[0]!.ServicePort, 2);
  t.false(JSON.stringify(big).includes('x'.repeat(600)), 'an unknown 10 KB parameter is not copied into Consul');

  // bad nodes: reported with their path and reason, counted; the others synced
  await waitUntil('problems logged', async () => g.logs().filter((l) => l.msg === 'zookeeper: provider node skipped').length >= 3);
  const problems = g.logs().filter((l) => l.msg === 'zookeeper: provider node skipped').map((l) => String(l.problem));
  t.true(problems.some((p) => p.startsWith('/dubbo/com.acme.OrderService/providers/dubbo%3A%2F%2F10.1.0.10') && p.includes('bad percent-encoding')), problems.join('\n'));
  t.true(problems.some((p) => p.includes('not an IP address or host name')));
  t.true(problems.some((p) => p.includes('/dubbo/com.acme.Evil/providers') && p.includes('not a Java type name')));
  t.false(problems.some((p) => p.includes('\n')), 'a reported problem is one line');
  const metrics = await (await fetch(`${g.adminUrl}/metrics`)).text();
  t.regex(metrics, /gantry_registrator_bad_metadata_total\{source="zookeeper"[^}]*\} 3\n/);

  // an interface created after the start
  const late = await addProvider(dubbo, 'com.acme.Late', provider('com.acme.Late', '10.1.0.20', 20880));
  await waitUntil('Late in Consul', async () => (await catalog('com-acme-late')).length === 1);
  t.deepEqual(await zkServices(owner), ['com-acme-big', 'com-acme-late', 'com-acme-orderservice']);

  // ZooKeeper down and back (within the session timeout): nothing deregistered meanwhile
  await fx.zk.kill();
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline) {
    t.deepEqual(await zkServices(owner), ['com-acme-big', 'com-acme-late', 'com-acme-orderservice'], 'nothing deregistered while ZooKeeper is down');
    await sleep(200);
  }
  await fx.zk.restart();
  await waitUntil('reconnected', async () => g.logs().some((l) => /reconnected|session established/.test(String(l.msg)) && Date.parse(String(l.time)) > deadline), { timeoutMs: 30_000 });
  // the watches work again: a removal and an addition are seen
  await dubbo.remove(late);
  await waitUntil('Late deregistered', async () => (await catalog('com-acme-late')).length === 0, { timeoutMs: 30_000 });
  await addProvider(dubbo, 'com.acme.OrderService', provider('com.acme.OrderService', '10.1.0.21', 20880, '&version=1.0.0'));
  await waitUntil('second OrderService provider', async () => (await catalog('com-acme-orderservice')).length === 2, { timeoutMs: 30_000 });
  const audit = g.logs().filter((l) => l.action === 'deregister').map((l) => String(l.service));
  t.deepEqual(audit, ['com-acme-late'], 'the only deregistration is the removed provider');
});

test.serial('a real session expiry: a new session, a full listing, nothing deregistered in between, changes seen again', async (t) => {
  const log = createLogger({ component: 'test', level: process.env.GANTRY_TEST_LOG ?? 'warn' });
  const dubbo = await connectZk(fx.zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => dubbo.close());
  for (let i = 0; i < 20; i++) await addProvider(dubbo, `com.acme.Exp${i}`, provider(`com.acme.Exp${i}`, '10.2.0.1', 30000 + i), '/exp');
  const session = new ZkSession({ connect: fx.zk.connectString, sessionTimeoutMs: 4000, log });
  const ac = new AbortController();
  t.teardown(() => { ac.abort(); session.close(); });
  await session.start();
  const owner = asOwnerId('zookeeper@exp');
  const source = new ZooKeeperSource({ session, roots: ['/exp'], owner, nameRule: 'interface', log });
  const deregistered: string[] = [];
  const r = new Reconciler({
    source, sink: new ConsulCatalogSink({ consul: fx.consul, node: 'zookeeper-sync-exp' }), owner, log, resyncMs: 60_000,
    onApplied: (a) => { if (a.action === 'deregister') deregistered.push(a.instance.name); },
  });
  void r.run(ac.signal);
  await waitUntil('20 imported', async () => (await zkServices(owner)).length === 20, { timeoutMs: 30_000 });

  // expire the session for real: a second client takes it over with its id and password, then closes it
  const oldId = session.sessionId;
  await expireSession(fx.zk.connectString, Buffer.from(oldId, 'hex'), session.sessionPassword, () => session.connected && session.sessionId !== oldId);
  t.true(session.renewals >= 1);
  t.is((await zkServices(owner)).length, 20);
  await addProvider(dubbo, 'com.acme.Exp99', provider('com.acme.Exp99', '10.2.0.1', 30099), '/exp');
  await dubbo.remove(`/exp/com.acme.Exp3/providers/${provider('com.acme.Exp3', '10.2.0.1', 30003)}`);
  await waitUntil('changes after expiry seen', async () => { const s = await zkServices(owner); return s.includes('com-acme-exp99') && !s.includes('com-acme-exp3'); }, { timeoutMs: 30_000 });
  t.deepEqual(deregistered, ['com-acme-exp3'], 'nothing but the removed provider was ever deregistered');
});

test.serial('a connect request the server accepted and never answered (a ZooKeeper still loading) is dropped and tried again: same session, watches kept', async (t) => {
  // a loopback relay in front of the real ZooKeeper; while `silent`, it accepts and says nothing
  let silent = false;
  const sockets = new Set<Socket>();
  const silentOpened: Socket[] = [];
  const silentClosed: Socket[] = [];
  const relay = createServer((down) => {
    sockets.add(down);
    down.on('close', () => sockets.delete(down));
    down.on('error', () => down.destroy());
    if (silent) {
      silentOpened.push(down);
      down.on('close', () => silentClosed.push(down));
      down.resume(); // reads the connect request and drops it, so the client's close is seen
      return;
    }
    const up = connect(fx.zk.port, '127.0.0.1');
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of sockets) s.destroy(); relay.close(); });
  const connectString = `127.0.0.1:${(relay.address() as AddressInfo).port}`;

  const lines: string[] = [];
  const log = createLogger({ component: 'test', level: 'info', destination: new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } }) });
  const session = new ZkSession({ connect: connectString, sessionTimeoutMs: 8000, log });
  t.teardown(() => session.close());
  await session.start();
  const id = session.sessionId;
  const dubbo = await connectZk(fx.zk.connectString);
  t.teardown(() => dubbo.close());
  await dubbo.mkdirp('/wedge/a');
  let fired: (name: string) => void = () => undefined;
  const watched = new Promise<string>((resolve) => { fired = resolve; });
  t.deepEqual(await session.children('/wedge/a', (e) => fired(e.getName())), []);

  silent = true;
  for (const s of sockets) s.destroy();
  await waitUntil('the client on a silent connection', async () => silentOpened.length > 0, { timeoutMs: 5000 });
  t.false(session.connected);
  silent = false;
  await waitUntil('the same session back', async () => session.connected, { timeoutMs: 7000 });
  await waitUntil('the unanswered connection dropped by the client', async () => silentClosed.includes(silentOpened[0]!), { timeoutMs: 1000 });
  t.is(session.sessionId, id, 'the same session, not a new one');
  t.is(session.renewals, 0);
  t.true(lines.some((l) => l.includes('connect request unanswered')), 'the retry is logged');
  await dubbo.create('/wedge/a/child', 'persistent');
  t.is(await watched, 'NODE_CHILDREN_CHANGED', 'a watch set before is still there');
});
