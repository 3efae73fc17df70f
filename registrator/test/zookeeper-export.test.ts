// Consul → ZooKeeper against a real Consul and a real ZooKeeper: passing
// instances tagged dubbo.interface=… become ephemeral provider nodes in Dubbo's
// format; critical ones lose theirs; a node deleted by hand comes back; a real
// session expiry brings every node back under the new session; a ZooKeeper
// restart that outlives the session meets the old session's node still there
// (Dubbo #5125) and replaces it.
import test from 'ava';
import { createLogger, asOwnerId } from '@gantry/core';
import { connectZk, expireSession } from '../../test/harness/engines/zookeeper-client.ts';
import { manageEngines, consulWithZooKeeper } from '../../test/harness/ava.ts';
import { waitUntil, sleep } from '../../test/harness/process.ts';
import { parseProviderNode, type DubboUrl } from '../src/sources/zookeeper/dubbo-url.ts';
import { ZkSession } from '../src/sources/zookeeper/session.ts';
import { ConsulExportSource } from '../src/sources/zookeeper/exports.ts';
import { ZooKeeperSink } from '../src/sinks/zookeeper.ts';
import { Reconciler } from '../src/reconciler.ts';

const track = manageEngines(test);
const fx = consulWithZooKeeper(test, track, { probe: {} });
const log = createLogger({ component: 'test', level: process.env.GANTRY_TEST_LOG ?? 'warn' });

async function register(id: string, name: string, address: string, port: number, extra: { tags?: string[]; meta?: Record<string, string>; status?: string } = {}): Promise<void> {
  await fx.consul.request('PUT', '/v1/agent/service/register', {
    body: { ID: id, Name: name, Address: address, Port: port, Tags: extra.tags ?? [], Meta: extra.meta ?? {}, Check: { CheckID: `c-${id}`, TTL: '10m', Status: extra.status ?? 'passing' } },
  });
}
const setStatus = (id: string, s: 'pass' | 'fail'): Promise<unknown> => fx.consul.request('PUT', `/v1/agent/check/${s}/c-${id}`);

async function providers(iface: string): Promise<Array<{ name: string; url: DubboUrl; owner: string }>> {
  const path = `/dubbo/${iface}/providers`;
  const names = await fx.probe.children(path).catch(() => [] as string[]);
  const out = [];
  for (const name of names) {
    const p = parseProviderNode(name);
    if (!p.ok) throw new Error(p.reason);
    const st = await fx.probe.stat(`${path}/${name}`);
    if (st) out.push({ name, url: p.url, owner: st.ephemeralOwner.toString('hex') });
  }
  return out;
}

async function startBridge(t: { teardown(fn: () => void): void }, sessionTimeoutMs = 4000): Promise<{ session: ZkSession; reconciler: Reconciler; sink: ZooKeeperSink }> {
  const session = new ZkSession({ connect: fx.zk.connectString, sessionTimeoutMs, log });
  const ac = new AbortController();
  t.teardown(() => { ac.abort(); session.close(); });
  await session.start();
  const owner = asOwnerId('zookeeper-export@t');
  const sink = new ZooKeeperSink({ session, root: '/dubbo', log });
  const reconciler = new Reconciler({ source: new ConsulExportSource({ consul: fx.consul, owner, log }), sink, owner, log, resyncMs: 60_000 });
  void reconciler.run(ac.signal);
  return { session, reconciler, sink };
}


test.serial('passing instances tagged dubbo.interface become provider nodes in Dubbo\'s format; critical, imported and invalid ones do not; a deleted node comes back', async (t) => {
  await register('orders-1', 'orders', '10.5.0.1', 20880, { tags: ['dubbo.interface=com.acme.Orders', 'dubbo.version=1.0.0', 'dubbo.methods=place,cancel'] });
  await register('orders-2', 'orders', '10.5.0.2', 20880, { tags: ['dubbo.interface=com.acme.Orders'], status: 'critical' });
  await register('pay-1', 'pay', '10.5.0.3', 20881, { meta: { 'dubbo-interface': 'com.acme.Pay', 'dubbo-protocol': 'tri', 'dubbo-group': 'g1' } });
  await register('imported', 'from-zk', '10.5.0.4', 1, { tags: ['dubbo.interface=com.acme.Loop'], meta: { 'gantry-source': 'zookeeper' } });
  await register('bad', 'bad', '10.5.0.5', 1, { tags: ['dubbo.interface=com/acme{{x}}'] });
  const { session, reconciler } = await startBridge(t);

  const orders = await waitUntil('Orders exported', async () => { const l = await providers('com.acme.Orders'); return l.length ? l : undefined; }, { timeoutMs: 20_000 });
  // the first pass is over: whatever it was to export is exported
  await waitUntil('the first export pass over', async () => reconciler.passCount >= 1, { timeoutMs: 20_000 });
  t.is((await providers('com.acme.Orders')).length, 1, 'the critical instance is not exported');
  const o = orders[0]!;
  t.like(o.url, { protocol: 'dubbo', host: '10.5.0.1', port: 20880, path: 'com.acme.Orders' });
  const params = Object.fromEntries(o.url.params);
  t.like(params, { anyhost: 'true', application: 'orders', interface: 'com.acme.Orders', side: 'provider', version: '1.0.0', methods: 'place,cancel', 'gantry.owner': 'zookeeper-export@t', dubbo: '2.0.2' });
  t.regex(params.timestamp ?? '', /^\d{13}$/);
  t.is(o.owner, session.sessionId, 'an ephemeral node of the bridge\'s session');
  const pay = await waitUntil('Pay exported', async () => { const l = await providers('com.acme.Pay'); return l.length ? l : undefined; });
  t.like(pay[0]!.url, { protocol: 'tri', host: '10.5.0.3', port: 20881 });
  t.is(pay[0]!.url.params.get('group'), 'g1');
  t.is(await fx.probe.stat('/dubbo/com.acme.Loop'), null, 'an instance imported from ZooKeeper never goes back');

  // critical → node removed; passing again → back
  await setStatus('orders-1', 'fail');
  await waitUntil('Orders node removed', async () => (await providers('com.acme.Orders')).length === 0);
  t.truthy(await fx.probe.stat('/dubbo/com.acme.Orders/providers'), 'the persistent parents stay');
  await setStatus('orders-1', 'pass');
  await waitUntil('Orders node back', async () => (await providers('com.acme.Orders')).length === 1);

  // deleted by someone else → created again
  const [again] = await providers('com.acme.Orders');
  await fx.probe.remove(`/dubbo/com.acme.Orders/providers/${again!.name}`);
  await waitUntil('re-created after a delete by hand', async () => (await providers('com.acme.Orders')).length === 1, { timeoutMs: 10_000 });
  for (const id of ['orders-1', 'orders-2', 'pay-1', 'imported', 'bad']) await fx.consul.request('PUT', `/v1/agent/service/deregister/${id}`);
  await waitUntil('all nodes gone after deregistration', async () => (await providers('com.acme.Orders')).length === 0 && (await providers('com.acme.Pay')).length === 0);
});

test.serial('a real session expiry: every exported node back under the new session', async (t) => {
  for (let i = 0; i < 30; i++) await register(`exp-${i}`, `exp${i}`, '10.6.0.1', 30000 + i, { tags: [`dubbo.interface=com.acme.Exp${i}`] });
  t.teardown(async () => { for (let i = 0; i < 30; i++) await fx.consul.request('PUT', `/v1/agent/service/deregister/exp-${i}`); });
  const { session } = await startBridge(t);
  const all = async (): Promise<string[]> => (await Promise.all(Array.from({ length: 30 }, (_, i) => providers(`com.acme.Exp${i}`)))).flat().map((p) => p.owner);
  await waitUntil('30 exported', async () => (await all()).length === 30, { timeoutMs: 30_000 });
  const oldId = session.sessionId;
  await expireSession(fx.zk.connectString, Buffer.from(oldId, 'hex'), session.sessionPassword, () => session.connected && session.sessionId !== oldId);
  const newId = session.sessionId;
  const t0 = Date.now();
  await waitUntil('every node back under the new session', async () => { const o = await all(); return o.length === 30 && o.every((x) => x === newId); }, { timeoutMs: 30_000, intervalMs: 50 });
  t.log(`nodes back ${Date.now() - t0} ms after the new session`);
  t.pass();
});

test.serial('ZooKeeper down past the session timeout: the old session\'s node is still there at re-registration (Dubbo #5125), replaced by one of the new session', async (t) => {
  await register('trap', 'trap', '10.7.0.1', 20880, { tags: ['dubbo.interface=com.acme.Trap'] });
  t.teardown(async () => { await fx.consul.request('PUT', '/v1/agent/service/deregister/trap'); });
  const { session, sink } = await startBridge(t);
  const first = await waitUntil('Trap exported', async () => { const l = await providers('com.acme.Trap'); return l.length ? l[0] : undefined; });
  const oldId = session.sessionId;
  fx.probe.close();
  await fx.zk.kill();
  await waitUntil('the watchdog gives the old session up', async () => session.renewals >= 1, { timeoutMs: 30_000 });
  await fx.zk.restart(); // the restored old session lives on in the server until its timeout
  fx.probe = await connectZk(fx.zk.connectString);
  await waitUntil('a new session', async () => session.connected && session.sessionId !== oldId, { timeoutMs: 30_000 });
  const replaced = await waitUntil('the node is the new session\'s', async () => { const l = await providers('com.acme.Trap'); return l.length === 1 && l[0]!.owner === session.sessionId ? l[0] : undefined; }, { timeoutMs: 30_000, intervalMs: 50 });
  t.is(replaced.name, first.name, 'the same node name, now owned by the new session');
  t.is(sink.replaced, 1, 'NodeExists of the old session was met, and the node deleted and created again');
  await sleep(6000); // past the old session's expiry
  const after = await providers('com.acme.Trap');
  t.is(after.length, 1, 'the provider did not vanish with the old session');
  t.is(after[0]!.owner, session.sessionId);
});
