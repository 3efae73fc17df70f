// Two bridges on one ZooKeeper and one Consul: one leader writes; when it is
// killed (SIGKILL), the follower takes over within 15 s and the exported nodes
// are the follower's session's, while the imported instances stay in Consul.
import test from 'ava';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { manageEngines, consulWithZooKeeper } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { encodeNodeName } from '../src/sources/zookeeper/dubbo-url.ts';

const track = manageEngines(test);
const fx = consulWithZooKeeper(test, track, { probe: { sessionTimeoutMs: 30_000 } });

test('the leader killed: the follower takes over within 15 s and re-creates the provider nodes under its own session', async (t) => {
  await fx.probe.mkdirp('/dubbo/com.acme.Vm/providers');
  await fx.probe.create(`/dubbo/com.acme.Vm/providers/${encodeNodeName('dubbo://10.4.0.1:20880/com.acme.Vm?application=vm&interface=com.acme.Vm&side=provider')}`);
  for (let i = 0; i < 3; i++) await fx.consul.request('PUT', '/v1/agent/service/register', { body: { ID: `ha${i}`, Name: 'ha', Address: `10.4.1.${i + 1}`, Port: 20880, Tags: ['dubbo.interface=com.acme.Ha'] } });
  const args = ['--docker=false', '--consul-addr', fx.engine.addr, '--zookeeper', fx.zk.connectString, '--zk-name', 'ha', '--zk-session-timeout', '4s', '--zk-leader-ttl', '2s', '--resync', '3s'];
  const a = await startGantry('registrator', args);
  track('bridge a', a);
  const b = await startGantry('registrator', args);
  track('bridge b', b);
  const nodes = async (): Promise<Array<{ name: string; owner: string }>> => {
    const names = await fx.probe.children('/dubbo/com.acme.Ha/providers').catch(() => [] as string[]);
    const out = [];
    for (const n of names) {
      const st = await fx.probe.stat(`/dubbo/com.acme.Ha/providers/${n}`);
      if (st) out.push({ name: n, owner: st.ephemeralOwner.toString('hex') });
    }
    return out;
  };
  const leaderOf = (): GantryProcess | undefined => [a, b].find((g) => { const l = g.logs().filter((x) => x.msg === 'became leader' || x.msg === 'no longer leader'); return l.at(-1)?.msg === 'became leader'; });
  await waitUntil('three nodes exported', async () => (await nodes()).length === 3, { timeoutMs: 60_000 });
  const leader = await waitUntil('a leader', async () => leaderOf());
  const follower = leader === a ? b : a;
  const before = new Set((await nodes()).map((n) => n.owner));
  t.is(before.size, 1, 'one session wrote them all');
  const imported = async (): Promise<number> => ((await fx.consul.request<unknown[]>('GET', '/v1/catalog/service/com-acme-vm')).body ?? []).length;
  t.is(await imported(), 1);

  await leader.kill();
  const t0 = Date.now();
  await waitUntil('the follower leads', async () => follower.logs().some((l) => l.msg === 'became leader'), { timeoutMs: 15_000, intervalMs: 100 });
  await waitUntil('nodes under a new session', async () => {
    const n = await nodes();
    return n.length === 3 && n.every((x) => !before.has(x.owner));
  }, { timeoutMs: Math.max(1000, 15_000 - (Date.now() - t0)), intervalMs: 100 });
  t.log(`taken over in ${Date.now() - t0} ms`);
  t.is(await imported(), 1, 'the imported provider stayed in Consul');
});
