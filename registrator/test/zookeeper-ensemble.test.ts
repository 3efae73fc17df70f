// The bridge against a three-server ZooKeeper ensemble: the leader server is
// killed mid-run; the bridge fails over to another server with its session,
// imports and exports keep going, and nothing is lost: no imported instance is
// deregistered from Consul, no exported provider node disappears.
import test from 'ava';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startZooKeeperEnsemble, type ZooKeeperEnsemble } from '../../test/harness/engines/zookeeper-ensemble.ts';
import { connectZk } from '../../test/harness/engines/zookeeper-client.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil, sleep } from '../../test/harness/process.ts';
import { encodeNodeName } from '../src/sources/zookeeper/dubbo-url.ts';

const track = manageEngines(test);
let zk: ZooKeeperEnsemble;
let consulEngine: ConsulEngine;
let consul: ConsulClient;

const provider = (iface: string, port: number): string => encodeNodeName(`dubbo://10.8.0.1:${port}/${iface}?application=vm&interface=${iface}&side=provider&release=2.7.8`);

test.before(async () => {
  [zk, consulEngine] = await Promise.all([startZooKeeperEnsemble(3), startConsul()]);
  track('zookeeper ensemble', zk);
  track('consul', consulEngine);
  consul = createConsul({ addr: consulEngine.addr });
});
test.after.always(() => consul?.close());

test('a ZooKeeper server killed: the bridge fails over and loses nothing', async (t) => {
  const dubbo = await connectZk(zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => dubbo.close());
  for (let i = 0; i < 10; i++) {
    await dubbo.mkdirp(`/dubbo/com.acme.Ens${i}/providers`);
    await dubbo.create(`/dubbo/com.acme.Ens${i}/providers/${provider(`com.acme.Ens${i}`, 20000 + i)}`);
  }
  for (let i = 0; i < 5; i++) {
    await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `c${i}`, Name: `cont${i}`, Address: '10.9.0.1', Port: 31000 + i, Tags: [`dubbo.interface=com.acme.Cont${i}`] } });
  }
  const g = await startGantry('registrator', [
    '--docker=false', '--consul-addr', consulEngine.addr, '--zookeeper', zk.connectString, '--zk-name', 'ens',
    '--zk-session-timeout', '20s', '--zk-leader-ttl', '2s', '--resync', '2s',
  ]);
  track('registrator', g);
  const imported = async (): Promise<number> => {
    const r = await consul.request<Record<string, string[]>>('GET', '/v1/catalog/services', { query: { filter: 'ServiceMeta["gantry-owner"] == "zookeeper@ens"' } });
    return Object.keys(r.body ?? {}).length;
  };
  const exported = async (): Promise<number> => {
    let n = 0;
    for (let i = 0; i < 5; i++) n += (await dubbo.children(`/dubbo/com.acme.Cont${i}/providers`).catch(() => [])).length;
    return n;
  };
  await waitUntil('10 imported, 5 exported', async () => (await imported()) === 10 && (await exported()) === 5, { timeoutMs: 60_000 });

  const modes = await Promise.all([0, 1, 2].map((i) => zk.mode(i)));
  const leader = modes.indexOf('leader');
  t.true(leader >= 0, modes.join(','));
  await zk.kill(leader);
  // through the election and the reconnects: nothing deregistered, no node lost
  const end = Date.now() + 8000;
  while (Date.now() < end) {
    t.is(await imported(), 10, 'no imported instance deregistered');
    const n = await exported().catch(() => -1);
    if (n >= 0) t.is(n, 5, 'no exported node lost');
    await sleep(250);
  }
  // the bridge still works on the two remaining servers
  await dubbo.mkdirp('/dubbo/com.acme.After/providers');
  await dubbo.create(`/dubbo/com.acme.After/providers/${provider('com.acme.After', 20100)}`);
  await consul.request('PUT', '/v1/agent/service/register', { body: { ID: 'c9', Name: 'cont9', Address: '10.9.0.1', Port: 31009, Tags: ['dubbo.interface=com.acme.Cont9'] } });
  await waitUntil('import after the failover', async () => (await imported()) === 11, { timeoutMs: 60_000 });
  await waitUntil('export after the failover', async () => (await dubbo.children('/dubbo/com.acme.Cont9/providers').catch(() => [])).length === 1, { timeoutMs: 60_000 });
  await zk.restart(leader);
  t.is(g.logs().filter((l) => l.action === 'deregister').length, 0, 'nothing was ever deregistered');
  t.false(g.logs().some((l) => l.msg === 'zookeeper: opening a new session'), 'the session survived the failover');
});
