// Failures the gateway must absorb: an instance killed mid-load (retries and
// ejection keep idempotent requests at 0 errors), a POST never retried after
// the upstream got it, and rate limits shared by two replicas through one Redis,
// with the local limiter taking over while Redis is gone and Redis back after.
import test from 'ava';
import type { IncomingMessage } from 'node:http';
import type Docker from 'dockerode';
import { Redis } from 'ioredis';
import { manageEngines } from '../../test/harness/ava.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { ensureDocker, newRunId, cleanupContainers } from '../../test/harness/engines/docker.ts';
import { register, kvPut, startGateway, waitInstances, waitPolicy, request, busybox, testUpstream, load, waitCount, sleep, closeClients, type TestUpstream } from './helpers.ts';

const track = manageEngines(test);
const runId = newRunId();
let consul: ConsulEngine;
let redis: RedisEngine;
let docker: Docker;
const ups: TestUpstream[] = [];

test.before(async () => {
  [consul, redis] = await Promise.all([startConsul(), startRedis()]);
  track('consul', consul);
  track('redis', redis);
  docker = await ensureDocker();
});

test.after.always(async () => {
  closeClients();
  await Promise.allSettled(ups.map((u) => u.close()));
  if (docker) await cleanupContainers(docker, runId);
});

test('an instance killed mid-load: 0 errors on GETs (retries on another instance, ejection); a POST the upstream got is not retried', async (t) => {
  const boxes = await Promise.all(['k1', 'k2', 'k3'].map((n) => busybox(docker, runId, n, n)));
  for (const [i, b] of boxes.entries()) await register(consul.addr, { id: `k${i + 1}`, name: 'kill', address: b.ip, port: 80 });
  const gw = await startGateway(consul.addr, ['--connect-timeout', '300ms', '--header-timeout', '2s', '--eject-after', '2', '--eject-time', '10s']);
  track('gateway-kill', gw);
  await waitInstances(gw, 'kill.gantry.test', '/', 'kill', ['k1', 'k2', 'k3']);
  let stop!: () => void;
  const until = new Promise<void>((r) => { stop = r; });
  const running = load(`${gw.url}/`, { host: 'kill.gantry.test', concurrency: 6, until });
  await sleep(1000);
  await boxes[1]!.container.kill(); // k2 gone; Consul still lists it as passing
  await sleep(2500);
  stop();
  const r = await running;
  t.log(`requests ${r.total}, by body ${JSON.stringify([...r.byBody])}`);
  t.deepEqual(r.errors, []);
  t.true((r.byBody.get('k2') ?? 0) > 0, 'k2 answered before it was killed');
  t.true(await gw.metric('gantry_gateway_ejections_total') >= 1);
  t.true(await gw.metric('gantry_gateway_retries_total', { service: 'kill' }) >= 1);

  // two instances that take the request and drop the connection without answering
  const dropper = (req: IncomingMessage) => { req.socket.destroy(); };
  const [d1, d2] = await Promise.all([testUpstream('d1', dropper), testUpstream('d2', dropper)]);
  ups.push(d1, d2);
  await register(consul.addr, { id: 'd1', name: 'drops', address: '127.0.0.1', port: d1.port });
  await register(consul.addr, { id: 'd2', name: 'drops', address: '127.0.0.1', port: d2.port });
  await waitInstances(gw, 'drops.gantry.test', '/', 'drops', ['d1', 'd2']);
  const post = await request(`${gw.url}/order`, { host: 'drops.gantry.test', method: 'POST', body: 'buy', headers: { 'content-type': 'text/plain' } });
  t.is(post.status, 502);
  // the 502 is sent after the gateway's last upstream attempt: the counts are final here
  t.is(d1.count + d2.count, 1, 'the POST reached one upstream once');
  const get = await request(`${gw.url}/order`, { host: 'drops.gantry.test' });
  t.is(get.status, 502);
  t.is(d1.count + d2.count, 3, 'the GET was tried on the other instance too');
});

test('rate limits: two replicas sharing Redis allow the limit within 5 %; Redis killed → the local limiter, back when Redis returns', async (t) => {
  const up = await testUpstream('limited');
  ups.push(up);
  await register(consul.addr, { id: 'rl-1', name: 'limited', address: '127.0.0.1', port: up.port });
  const args = ['--ratelimit-redis', redis.url, '--ratelimit-fallback', 'local', '--access-log=false'];
  const [a, b] = await Promise.all([startGateway(consul.addr, args), startGateway(consul.addr, args)]);
  track('gateway-a', a);
  track('gateway-b', b);
  const LIMIT = 100;
  const WINDOW_MS = 10_000;
  await kvPut(consul.addr, 'gantry/gateway/policy/limited', JSON.stringify({ rateLimit: { limit: LIMIT, window: '10s', key: 'route' } }));
  for (const g of [a, b]) await waitPolicy(g, 'limited.gantry.test', '/', 'limited', (p) => p?.rateLimit !== null && p?.rateLimit !== undefined);

  // start at the beginning of a window (Redis's clock, the one the script uses)
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  const [sec, usec] = await client.time();
  const nowMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  await sleep(WINDOW_MS - (nowMs % WINDOW_MS) + 100);
  const started = Date.now();
  const both = await Promise.all([a, b].map((g) => load(`${g.url}/`, { host: 'limited.gantry.test', count: 150, concurrency: 4 })));
  const elapsed = Date.now() - started;
  t.true(elapsed < WINDOW_MS - 200, `the burst fit in one window (${elapsed} ms)`);
  const allowed = both.reduce((s, r) => s + (r.byStatus.get(200) ?? 0), 0);
  const limited = both.reduce((s, r) => s + (r.byStatus.get(429) ?? 0), 0);
  t.log(`allowed ${allowed}, limited ${limited}`);
  t.is(allowed + limited, 300);
  t.true(Math.abs(allowed - LIMIT) <= LIMIT * 0.05, `allowed ${allowed} of limit ${LIMIT}`);
  const refused = await request(`${a.url}/`, { host: 'limited.gantry.test' });
  t.is(refused.status, 429);
  t.regex(String(refused.headers['retry-after']), /^\d+$/);
  t.is(refused.headers['ratelimit-limit'], String(LIMIT));
  t.is(refused.headers['ratelimit-remaining'], '0');
  t.truthy(refused.headers['ratelimit-reset']);

  await redis.kill();
  await waitCount('switch to the local limiter logged', () => a.logs().filter((l) => String(l.msg).startsWith('Redis unreachable')).length, 1);
  const local = await load(`${a.url}/`, { host: 'limited.gantry.test', count: 20, concurrency: 2 });
  t.is(local.errors.filter((e) => !e.startsWith('429')).length, 0, 'requests keep being answered');
  t.is((await a.health()).ratelimit, 'local');
  t.true(await a.metric('gantry_gateway_ratelimit_backend_switches_total', { to: 'local' }) >= 1);
  t.true(await a.metric('gantry_gateway_ratelimit_decisions_total', { backend: 'local' }) >= 20);
  // the local limiter enforces the limit on its own in a fresh window
  await sleep(WINDOW_MS - (Date.now() % WINDOW_MS) + 100);
  const alone = await load(`${a.url}/`, { host: 'limited.gantry.test', count: 130, concurrency: 4 });
  t.is(alone.byStatus.get(200), LIMIT);

  await redis.restart();
  await waitCount('back on Redis', async () => ((await a.health()).ratelimit === 'redis' ? 1 : 0), 1, 30_000);
  t.true(a.logs().some((l) => l.msg === 'rate limits shared through Redis again'));
  const onRedis = await a.metric('gantry_gateway_ratelimit_decisions_total', { backend: 'redis' });
  await request(`${a.url}/`, { host: 'limited.gantry.test' });
  t.is(await a.metric('gantry_gateway_ratelimit_decisions_total', { backend: 'redis' }), onRedis + 1, 'decided by Redis again');
});
