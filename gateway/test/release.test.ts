// Release practices from Consul KV, applied without restart: a canary split by
// tag/Meta subset, testers sent to green by header, a one-key blue/green switch
// under load (0 failed requests), changes audited in the Redis stream, and
// mirroring that never touches the primary's answers, even with the mirror gone.
import test from 'ava';
import type Docker from 'dockerode';
import { Redis } from 'ioredis';
import { entryFromFields } from '@gantry/audit';
import { manageEngines } from '../../test/harness/ava.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { ensureDocker, newRunId, cleanupContainers } from '../../test/harness/engines/docker.ts';
import { register, kvPut, startGateway, waitInstances, waitPolicy, request, busybox, testUpstream, load, waitCount, sleep, type Gw, closeClients, type TestUpstream } from './helpers.ts';

const track = manageEngines(test);
const runId = newRunId();
let consul: ConsulEngine;
let redis: RedisEngine;
let docker: Docker;
let gw: Gw;
const ups: TestUpstream[] = [];
const HOST = 'shop.gantry.test';

test.before(async () => {
  [consul, redis] = await Promise.all([startConsul(), startRedis()]);
  track('consul', consul);
  track('redis', redis);
  docker = await ensureDocker();
  const [v1, v2] = await Promise.all([busybox(docker, runId, 'v1', 'v1'), busybox(docker, runId, 'v2', 'v2')]);
  // one subset by tag, the other by Meta: both are how Consul users mark versions
  await register(consul.addr, { id: 'shop-v1', name: 'shop', address: v1.ip, port: 80, tags: ['version=v1'], meta: { color: 'blue' } });
  await register(consul.addr, { id: 'shop-v2', name: 'shop', address: v2.ip, port: 80, tags: ['color=green'], meta: { version: 'v2' } });
  gw = await startGateway(consul.addr, ['--audit-redis', redis.url, '--kv-prefix', 'gantry/gateway']);
  track('gateway', gw);
  await waitInstances(gw, HOST, '/', 'shop', ['shop-v1', 'shop-v2']);
});

test.after.always(async () => {
  closeClients();
  await Promise.allSettled(ups.map((u) => u.close()));
  if (docker) await cleanupContainers(docker, runId);
});

test.serial('canary: 95 % version=v1 / 5 % version=v2 within ±3 points over 2,000 requests; testers matched by header go to green', async (t) => {
  await kvPut(consul.addr, 'gantry/gateway/policy/shop', JSON.stringify({
    subsets: { blue: { color: 'blue' }, green: { color: 'green' } },
    split: [{ subset: { version: 'v1' }, weight: 95 }, { subset: { version: 'v2' }, weight: 5 }],
    match: [{ header: 'x-tester', value: 'yes', subset: 'green' }, { cookie: 'lane', value: 'green', subset: 'green' }],
  }));
  await waitPolicy(gw, HOST, '/', 'shop', (p) => Array.isArray(p?.split) && (p.split as unknown[]).length === 2);
  const r = await load(`${gw.url}/`, { host: HOST, count: 2000, concurrency: 8 });
  t.deepEqual(r.errors, []);
  const v2 = r.byBody.get('v2') ?? 0;
  const pct = (v2 / 2000) * 100;
  t.log(`v2 share ${pct.toFixed(2)} % (${v2}/2000)`);
  t.true(pct >= 2 && pct <= 8, `v2 share ${pct} %`);
  const testers = await load(`${gw.url}/`, { host: HOST, count: 50, concurrency: 5, headers: { 'x-tester': 'yes' } });
  t.deepEqual([...testers.byBody.entries()], [['v2', 50]]);
  const cookie = await load(`${gw.url}/`, { host: HOST, count: 20, concurrency: 2, headers: { cookie: 'a=b; lane=green' } });
  t.deepEqual([...cookie.byBody.entries()], [['v2', 20]]);
});

test.serial('blue/green: one KV key switches all traffic under load with 0 failed requests; the change is audited', async (t) => {
  await kvPut(consul.addr, 'gantry/gateway/active/shop', 'blue');
  await waitPolicy(gw, HOST, '/', 'shop', (p) => p?.active === 'blue');
  let switched!: () => void;
  const done = new Promise<void>((r) => { switched = r; });
  const running = load(`${gw.url}/`, { host: HOST, concurrency: 8, until: done });
  await sleep(800);
  await kvPut(consul.addr, 'gantry/gateway/active/shop', 'green');
  await waitPolicy(gw, HOST, '/', 'shop', (p) => p?.active === 'green');
  await sleep(800);
  switched();
  const r = await running;
  t.deepEqual(r.errors, [], 'no request failed during the switch');
  t.true((r.byBody.get('v1') ?? 0) > 0 && (r.byBody.get('v2') ?? 0) > 0, JSON.stringify([...r.byBody]));
  const after = await load(`${gw.url}/`, { host: HOST, count: 40, concurrency: 4 });
  t.deepEqual([...after.byBody.entries()], [['v2', 40]]);

  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  const entries = await waitCount('audit entries of the switch', async () => {
    const list = await client.xrange('gantry:audit', '-', '+');
    return list.filter(([, f]) => f.includes('active/shop') && f.includes('green')).length;
  }, 1);
  t.true(entries >= 1);
  const list = await client.xrange('gantry:audit', '-', '+');
  const e = entryFromFields(list.map(([, f]) => f).find((f) => f.includes('green') && f.includes('active/shop'))!);
  t.like(e, { action: 'policy-update', service: 'shop', source: 'consul-kv', origin: 'active/shop', reason: 'kv-changed', status: 'green' });
  t.regex(e.owner, /^gateway@/);
  await kvPut(consul.addr, 'gantry/gateway/active/shop', 'nonexistent');
  await waitCount('bad active value logged', () => gw.logs().filter((l) => typeof l.problem === 'string' && l.problem.includes('active/shop')).length, 1);
  const stillGreen = await load(`${gw.url}/`, { host: HOST, count: 20, concurrency: 2 });
  t.is(stillGreen.byStatus.get(200), 20, 'a bad switch value keeps the service served (no policy switch)');
});

test.serial('mirroring: copies reach the mirror, the primary answers unchanged; with the mirror gone the primary is untouched and drops are counted', async (t) => {
  const shadow = await testUpstream('shadow');
  ups.push(shadow);
  await register(consul.addr, { id: 'shadow-1', name: 'shadow', address: '127.0.0.1', port: shadow.port });
  await kvPut(consul.addr, 'gantry/gateway/active/shop', 'blue');
  await kvPut(consul.addr, 'gantry/gateway/policy/shop', JSON.stringify({ subsets: { blue: { color: 'blue' }, green: { color: 'green' } }, mirror: { service: 'shadow', percent: 100 } }));
  await waitPolicy(gw, HOST, '/', 'shop', (p) => (p?.mirror as { service?: string } | null)?.service === 'shadow' && p?.active === 'blue');
  await waitInstances(gw, 'shadow.gantry.test', '/', 'shadow', ['shadow-1']);
  const r = await load(`${gw.url}/mirrored?x=1`, { host: HOST, count: 200, concurrency: 4 });
  t.is(r.byStatus.get(404), 200, 'busybox has no /mirrored: the primary answer is the primary\'s'); // the mirror answers 200 "shadow"
  await waitCount('copies at the mirror', () => shadow.count, 190);
  t.true(shadow.seen.some((s) => s.url === '/mirrored?x=1' && s.headers.host === HOST));
  const post = await request(`${gw.url}/`, { host: HOST, method: 'POST', body: 'payload-123', headers: { 'content-type': 'text/plain' } });
  t.not(post.status, 0);
  await waitCount('POST copy with its body', () => shadow.seen.filter((s) => s.method === 'POST' && s.bodyBytes === 11).length, 1);

  await shadow.close(); // the mirror is gone: refused connections
  const dropsBefore = await gw.metric('gantry_gateway_mirror_drops_total', { service: 'shadow' });
  const r2 = await load(`${gw.url}/`, { host: HOST, count: 200, concurrency: 4 });
  t.deepEqual(r2.errors, []);
  t.deepEqual([...r2.byBody.entries()], [['v1', 200]]);
  await waitCount('mirror drops counted', async () => (await gw.metric('gantry_gateway_mirror_drops_total', { service: 'shadow' })) - dropsBefore, 150);
});
