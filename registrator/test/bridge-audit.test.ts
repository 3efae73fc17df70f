// The ZooKeeper bridge and the static-files source as audited writers, against
// a real Consul, Redis and ZooKeeper: each publishes its heartbeat under
// gantry/writers/ (the Heartbeat the Docker and Kubernetes parts use); a bad
// Dubbo node, a bad application-level instance, a Consul service with a bad dubbo.interface and a bad static entry
// are refusals in the audit stream that `gantry audit drift` lists with where and
// why; a bridge SIGKILLed leaves its records behind as orphans once its heartbeat lapses.
import test from 'ava';
import { execFile } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { startZooKeeper, type ZooKeeperEngine } from '../../test/harness/engines/zookeeper.ts';
import { connectZk } from '../../test/harness/engines/zookeeper-client.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil, tempDir, removeDir } from '../../test/harness/process.ts';
import { repoRoot } from '../../test/harness/bins.ts';
import { encodeNodeName } from '../src/sources/zookeeper/dubbo-url.ts';
import type { DriftReport } from '../../audit/src/drift.ts';
import type { HeartbeatValue } from '../../audit/src/heartbeat.ts';

const track = manageEngines(test);
let consulEngine: ConsulEngine;
let redis: RedisEngine;
let zk: ZooKeeperEngine;
let consul: ConsulClient;
const KEY = 'audit:bridge';

function drift(): Promise<{ code: number; report: DriftReport }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'drift', '--json', '--audit-redis', redis.url, '--audit-key', KEY],
      { env: { ...process.env, CONSUL_HTTP_ADDR: consulEngine.addr }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 99) : 0;
        if (code !== 0 && code !== 1) reject(new Error(`gantry audit drift exited ${code}: ${stderr}`));
        else resolve({ code, report: JSON.parse(stdout) as DriftReport });
      });
  });
}

async function beats(): Promise<Array<{ key: string; held: boolean; v: HeartbeatValue }>> {
  const r = await consul.request<Array<{ Key: string; Value: string; Session?: string }> | null>('GET', '/v1/kv/gantry/writers/', { query: { recurse: true } });
  return (r.status === 404 ? [] : r.body ?? []).map((kv) => ({ key: kv.Key, held: Boolean(kv.Session), v: JSON.parse(Buffer.from(kv.Value, 'base64').toString()) as HeartbeatValue }));
}

test.before(async () => {
  [consulEngine, redis, zk] = await Promise.all([startConsul({ hcl: 'session_ttl_min = "1s"' }), startRedis(), startZooKeeper()]);
  track('consul', consulEngine);
  track('redis', redis);
  track('zookeeper', zk);
  consul = createConsul({ addr: consulEngine.addr });
});
test.after.always(() => consul?.close());

test('ZooKeeper bridge and static files: heartbeats in Consul; bad Dubbo nodes, exports and static entries are refusals drift lists; a killed bridge\'s records become orphans', async (t) => {
  const c = await connectZk(zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => c.close());
  await c.mkdirp('/dubbo/com.acme.Pay/providers');
  await c.create(`/dubbo/com.acme.Pay/providers/${encodeNodeName('dubbo://10.5.0.1:20880/com.acme.Pay?application=pay&interface=com.acme.Pay&side=provider')}`);
  await c.create('/dubbo/com.acme.Pay/providers/dubbo%3A%2F%2F10.5.0.2%3A1%ZZ');
  await c.mkdirp('/services/evil');
  await c.create('/services/evil/i-1', 'ephemeral', '{"address": "10.5.0.4", "port": ');
  await consul.request('PUT', '/v1/agent/service/register', { body: { ID: 'bad-export', Name: 'badexp', Address: '10.5.0.3', Port: 1, Tags: ['dubbo.interface=not a type{{'] } });
  const dir = tempDir('static-audit');
  t.teardown(() => removeDir(dir));
  const file = join(dir, 'vms.json');
  writeFileSync(file, JSON.stringify({ services: [{ name: 'ledger', address: '10.5.1.1', port: 9000 }, { name: 'broken', address: '10.5.1.2', port: 'nope' }] }, null, 2));

  const g = await startGantry('registrator', [
    '--docker=false', '--consul-addr', consulEngine.addr, '--zookeeper', zk.connectString, '--zk-name', 'hb', '--zk-leader-ttl', '2s', '--zk-layout', 'both',
    '--static', dir, '--resync', '2s', '--heartbeat-ttl', '2s', '--audit-redis', redis.url, '--audit-key', KEY,
  ]);
  track('registrator', g);
  const staticOwner = `static@${hostname()}`;
  const owners = ['zookeeper@hb', 'zookeeper-export@hb', staticOwner];

  // heartbeats: one held key per writer, each after a full pass
  const live = await waitUntil('three heartbeats after a full pass', async () => {
    const b = (await beats()).filter((x) => owners.includes(x.v.owner) && x.held && x.v.lastFullPass);
    return b.length === 3 ? b : undefined;
  }, { timeoutMs: 30_000 });
  t.deepEqual(live.map((b) => [b.v.owner, b.v.source]).sort(), [[staticOwner, 'static'], ['zookeeper-export@hb', 'zookeeper-export'], ['zookeeper@hb', 'zookeeper']].sort());
  t.true(live.find((b) => b.v.owner === 'zookeeper@hb')!.v.counts.register >= 1);
  t.true(live.find((b) => b.v.owner === staticOwner)!.v.counts.register >= 1);

  // refusals: in the audit stream, listed by drift with where and why
  const d = await waitUntil('four refusals in the drift report', async () => {
    const r = await drift();
    return r.report.refused.length >= 4 ? r : undefined;
  }, { timeoutMs: 30_000 });
  t.is(d.code, 1, 'refusals are drift: exit 1');
  const zkRefusal = d.report.refused.find((r) => r.source === 'zookeeper' && r.origin.startsWith('/dubbo/'));
  t.like(zkRefusal, { owner: 'zookeeper@hb', origin: '/dubbo/com.acme.Pay/providers', originName: 'com.acme.Pay' });
  t.true(zkRefusal!.reason.startsWith('/dubbo/com.acme.Pay/providers/dubbo%3A%2F%2F10.5.0.2%3A1%ZZ: bad percent-encoding'), zkRefusal!.reason);
  const appRefusal = d.report.refused.find((r) => r.source === 'zookeeper' && r.origin.startsWith('/services/'));
  t.like(appRefusal, { owner: 'zookeeper@hb', origin: '/services/evil', originName: 'evil' });
  t.true(appRefusal!.reason.startsWith('/services/evil/i-1: data is not JSON'), appRefusal!.reason);
  const exportRefusal = d.report.refused.find((r) => r.source === 'zookeeper-export');
  t.like(exportRefusal, { owner: 'zookeeper-export@hb', originName: 'badexp' });
  t.regex(exportRefusal!.reason, /not a Java type name/);
  const staticRefusal = d.report.refused.find((r) => r.source === 'static');
  t.like(staticRefusal, { owner: staticOwner, origin: file });
  t.true(staticRefusal!.reason.startsWith(`${file}:`), staticRefusal!.reason);
  t.regex(staticRefusal!.reason, /port/);
  t.deepEqual(d.report.orphans, [], 'a live writer\'s records are not orphans');
  t.true(d.report.writers.filter((w) => owners.includes(w.owner)).every((w) => w.alive));

  // SIGKILL: the heartbeats lapse and the imported records are orphans of gone owners
  await g.kill();
  const after = await waitUntil('orphans of the killed writers', async () => {
    const r = await drift();
    const gone = r.report.writers.filter((w) => owners.includes(w.owner) && !w.alive);
    return gone.length === 3 && r.report.orphans.length >= 2 ? r : undefined;
  }, { timeoutMs: 30_000 });
  t.deepEqual(after.report.orphans.map((o) => [o.owner, o.service]).sort(), [[staticOwner, 'ledger'], ['zookeeper@hb', 'com-acme-pay']]);
});
