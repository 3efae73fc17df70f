// gantry registrator against the real Docker engine, Consul and Redis.
import test, { type ExecutionContext } from 'ava';
import type Docker from 'dockerode';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId } from '../../test/harness/engines/docker.ts';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { repoRoot } from '../../test/harness/bins.ts';

const track = manageEngines(test);
const runId = newRunId();
const owner = `test-${runId}`;
let docker: Docker;
let consulEngine: ConsulEngine;
let redis: RedisEngine;
let consul: ConsulClient;
let registrator: GantryProcess;

interface AgentService { ID: string; Service: string; Address: string; Port: number; Tags: string[]; Meta: Record<string, string> }

async function services(): Promise<AgentService[]> {
  const r = await consul.request<Record<string, AgentService>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${owner}"` } });
  return Object.values(r.body ?? {});
}
async function checkStatus(id: string): Promise<string | undefined> {
  const r = await consul.request<Record<string, { Status: string }>>('GET', '/v1/agent/checks');
  return r.body?.[`gantry:${id}`]?.Status;
}
const named = async (name: string): Promise<AgentService[]> => (await services()).filter((s) => s.Service === name);
const cname = (n: string): string => `${runId}-${n}`;
const label = { 'gantry.test': runId };

test.before(async () => {
  docker = await ensureDocker();
  [consulEngine, redis] = await Promise.all([startConsul(), startRedis()]);
  track('consul', consulEngine);
  track('redis', redis);
  consul = createConsul({ addr: consulEngine.addr });
  registrator = await startGantry('registrator', [
    '--owner', owner, '--require-label', `gantry.test=${runId}`, '--resync', '2s',
    '--audit-redis', redis.url, '--audit-key', `audit:${runId}`, '--log-level', 'debug',
  ], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });
  track('registrator', registrator);
});

test.after.always(async () => {
  await cleanupContainers(docker, runId);
  consul?.close();
});

test.serial('a container with SERVICE_* env and labels registers as registrator would; stopping it deregisters', async (t) => {
  const c = await runContainer(docker, {
    runId, name: cname('orders'), publish: { '8080/tcp': '0' },
    env: { SERVICE_NAME: 'orders', SERVICE_TAGS: 'a\\,b,c', SERVICE_VERSION: 'v1', SERVICE_8080_TEAM: 'pay' },
    labels: { ...label, SERVICE_TAGS: 'from-label', 'gantry.region': 'eu' },
  });
  const info = await c.inspect();
  const hostPort = Number(info.NetworkSettings.Ports['8080/tcp']![0]!.HostPort);
  const [svc] = await waitUntil('orders registered', async () => { const s = await named('orders'); return s.length === 1 ? s : undefined; }, { timeoutMs: 15_000 });
  t.is(svc!.Address, '127.0.0.1');
  t.is(svc!.Port, hostPort);
  t.deepEqual(svc!.Tags, ['from-label']); // labels override env
  t.like(svc!.Meta, { version: 'v1', team: 'pay', region: 'eu', 'gantry-source': 'docker', 'docker-container': cname('orders') });
  t.regex(svc!.ID, new RegExp(`:${cname('orders')}:8080$`));
  await c.stop({ t: 0 });
  await waitUntil('orders deregistered', async () => (await named('orders')).length === 0, { timeoutMs: 15_000 });
  t.pass();
});

test.serial('docker stop: deregistered on the stop signal while the container still serves (draining), before it dies; another signal changes nothing', async (t) => {
  // busybox httpd as PID 1 has no SIGTERM handler: the signal is ignored and docker stop
  // waits its timeout, then SIGKILLs — the grace a load balancer needs to let the instance go
  const c = await runContainer(docker, { runId, name: cname('drain'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'drain' }, labels: label });
  await waitUntil('drain registered', async () => (await named('drain')).length === 1, { timeoutMs: 15_000 });
  // a SIGHUP (a reload signal) is not a stop: once the registrator has seen its event, still registered
  await c.kill({ signal: 'SIGHUP' });
  await waitUntil('the registrator saw the SIGHUP', async () => registrator.logs().some((l) => l.event === 'kill' && c.id.startsWith(String(l.container))), { timeoutMs: 15_000 });
  t.is((await named('drain')).length, 1);
  const stopped = c.stop({ t: 10 });
  await waitUntil('drain deregistered', async () => (await named('drain')).length === 0, { timeoutMs: 15_000 });
  t.true((await c.inspect()).State.Running, 'deregistered while the container still runs');
  await stopped;
  t.false((await c.inspect()).State.Running);
  t.is((await named('drain')).length, 0);
});

test.serial('multi-port: -<port> suffix on the image name; udp gets :udp and a udp tag; SERVICE_TAGS keeps \\,', async (t) => {
  await runContainer(docker, { runId, name: cname('multi'), publish: { '8080/tcp': '0', '9090/tcp': '0', '5353/udp': '0' }, env: { SERVICE_TAGS: 'x\\,y,z' }, labels: label });
  const list = await waitUntil('multi registered', async () => {
    const s = (await services()).filter((x) => x.Meta['docker-container'] === cname('multi'));
    return s.length === 3 ? s : undefined;
  }, { timeoutMs: 15_000 });
  const names = list.map((s) => s.Service).sort();
  t.deepEqual(names, ['busybox-5353', 'busybox-8080', 'busybox-9090']);
  const udp = list.find((s) => s.Service === 'busybox-5353')!;
  t.true(udp.ID.endsWith(':5353:udp'));
  t.deepEqual(udp.Tags, ['x,y', 'z', 'udp']);
});

test.serial('bad labels are reported with container, label and reason; only what they concern is skipped', async (t) => {
  const bad: Array<{ n: string; env?: Record<string, string>; labels?: Record<string, string> }> = [
    { n: 'badport', env: { SERVICE_NAME: 'badport', SERVICE_8o_NAME: 'x' } },
    { n: 'badinterval', env: { SERVICE_NAME: 'badinterval', SERVICE_CHECK_TCP: 'true', SERVICE_CHECK_INTERVAL: 'soon' } },
    { n: 'noname', env: { SERVICE_NAME: '###' } },
    { n: 'bigtag', env: { SERVICE_NAME: 'bigtag', SERVICE_TAGS: 'x'.repeat(10_240) } },
    { n: 'nltag', labels: { SERVICE_NAME: 'nltag', SERVICE_TAGS: 'ok,evil\nserver x 1.2.3.4:80' } },
  ];
  for (const b of bad) await runContainer(docker, { runId, name: cname(b.n), publish: { '8080/tcp': '0' }, env: b.env ?? {}, labels: { ...label, ...(b.labels ?? {}) } });
  await runContainer(docker, { runId, name: cname('good'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'good' }, labels: label });
  await waitUntil('good registered', async () => (await named('good')).length === 1, { timeoutMs: 15_000 });
  const problems = await waitUntil('problems logged', async () => {
    const p = registrator.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('bad container metadata'));
    return p.length >= 4 ? p : undefined;
  }, { timeoutMs: 15_000 });
  const byName = new Map(problems.map((p) => [p.containerName as string, p]));
  t.regex(String(byName.get(cname('badinterval'))?.reason), /invalid duration "soon"/);
  t.is(byName.get(cname('badinterval'))?.label, 'env SERVICE_CHECK_INTERVAL');
  t.regex(String(byName.get(cname('noname'))?.reason), /no letter or digit/);
  t.regex(String(byName.get(cname('bigtag'))?.reason), /longer than 255/);
  t.regex(String(byName.get(cname('nltag'))?.reason), /control character/);
  t.is(byName.get(cname('nltag'))?.label, 'label SERVICE_TAGS');
  t.regex(String(byName.get(cname('badport'))?.reason), /port "8o" is not a number/);
  t.truthy(byName.get(cname('badport'))?.container);
  const all = (await services()).map((s) => s.Service);
  for (const skipped of ['badinterval', 'bigtag', 'nltag']) t.false(all.includes(skipped), skipped);
  t.true(all.includes('badport')); // the bad port key is reported; the container's valid service still registers
});

test.serial('Docker HEALTHCHECK is mirrored (healthy → passing, unhealthy → critical); paused → maintenance', async (t) => {
  await runContainer(docker, { runId, name: cname('healthy'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'healthy' }, labels: label, healthcheck: { test: ['CMD', 'true'], intervalMs: 300 } });
  await runContainer(docker, { runId, name: cname('sick'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'sick' }, labels: label, healthcheck: { test: ['CMD', 'false'], intervalMs: 300 } });
  const [h] = await waitUntil('healthy', async () => { const s = await named('healthy'); return s.length ? s : undefined; }, { timeoutMs: 15_000 });
  const [s] = await waitUntil('sick', async () => { const x = await named('sick'); return x.length ? x : undefined; }, { timeoutMs: 15_000 });
  await waitUntil('healthy passing', async () => (await checkStatus(h!.ID)) === 'passing', { timeoutMs: 15_000 });
  await waitUntil('sick critical', async () => (await checkStatus(s!.ID)) === 'critical', { timeoutMs: 15_000 });
  const paused = docker.getContainer(cname('healthy'));
  await paused.pause();
  await waitUntil('maintenance', async () => {
    const r = await consul.request<Record<string, { Status: string }>>('GET', '/v1/agent/checks');
    return r.body?.[`_service_maintenance:${h!.ID}`]?.Status === 'critical';
  }, { timeoutMs: 15_000 });
  await paused.unpause();
  await waitUntil('out of maintenance', async () => {
    const r = await consul.request<Record<string, { Status: string }>>('GET', '/v1/agent/checks');
    return !r.body?.[`_service_maintenance:${h!.ID}`];
  }, { timeoutMs: 15_000 });
  t.pass();
});

/**
 * A registrator of its own with no periodic resync (the shared one resyncs every
 * 2 s): what it does can only come from events and from watching Consul. It sees
 * only containers run with runId `${runId}-${suffix}` (runContainer's run label).
 */
async function ownRegistrator(t: ExecutionContext, suffix: string) {
  const own = `${owner}-${suffix}`;
  const key = `audit:${runId}-${suffix}`;
  const reg = await startGantry('registrator', [
    '--owner', own, '--require-label', `gantry.test=${runId}-${suffix}`, '--resync', '1h',
    '--audit-redis', redis.url, '--audit-key', key,
  ], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });
  track(`registrator (${suffix})`, reg);
  t.teardown(async () => { await reg.stop(); await cleanupContainers(docker, `${runId}-${suffix}`); });
  await waitUntil('first pass done', async () => /gantry_registrator_reconcile_passes_total\{[^}]*reason="start"[^}]*\} [1-9]/.test(await (await fetch(`${reg.adminUrl}/metrics`)).text()), { timeoutMs: 10_000 });
  const mine = async (): Promise<AgentService[]> => {
    const r = await consul.request<Record<string, AgentService>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${own}"` } });
    return Object.values(r.body ?? {});
  };
  const audit = (service: string): Array<Record<string, string>> => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'log', '--json', '--service', service, '--audit-redis', redis.url, '--audit-key', key], { encoding: 'utf8' });
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, string>);
  };
  return { own, key, reg, mine, audit, runId: `${runId}-${suffix}` };
}

test.serial('audit trail: register and deregister entries with origin and reason; gantry audit log prints them', async (t) => {
  const o = await ownRegistrator(t, 'audit');
  const c = await runContainer(docker, { runId: o.runId, name: cname('audited'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'audited' } });
  await waitUntil('audited', async () => (await o.mine()).length === 1, { timeoutMs: 15_000 });
  await c.stop({ t: 0 });
  await waitUntil('gone', async () => (await o.mine()).length === 0, { timeoutMs: 15_000 });
  const entries = await waitUntil('audit entries', async () => { const e = o.audit('audited'); return e.length >= 2 ? e : undefined; }, { timeoutMs: 10_000 });
  t.deepEqual(entries.map((e) => e.action), ['register', 'deregister']);
  t.like(entries[0], { service: 'audited', owner: o.own, source: 'docker', originName: cname('audited'), image: 'gantry/busybox:test', reason: 'event' });
  t.like(entries[1], { service: 'audited', owner: o.own, reason: 'event' });
  t.is(entries[0]!.origin, (await c.inspect()).Id);
  const text = spawnSync(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'log', '--since', '1h', '--audit-redis', redis.url, '--audit-key', o.key], { encoding: 'utf8' }).stdout;
  t.regex(text, /register +audited/);
});

test.serial('a service of ours deregistered behind our back is registered again at once (Consul is watched, not only resynced)', async (t) => {
  const o = await ownRegistrator(t, 'watch');
  await runContainer(docker, { runId: o.runId, name: cname('watched'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'watched' } });
  await runContainer(docker, { runId: o.runId, name: cname('bystander'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'bystander' } });
  const before = await waitUntil('both registered', async () => { const s = await o.mine(); return s.length === 2 ? s : undefined; }, { timeoutMs: 15_000 });
  const watched = before.find((s) => s.Service === 'watched')!;
  await consul.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(watched.ID)}`);
  // --resync is 1h: only the watch can bring it back
  await waitUntil('registered again', async () => (await o.mine()).some((s) => s.ID === watched.ID), { timeoutMs: 5_000 });
  t.deepEqual((await o.mine()).map((s) => s.ID).sort(), before.map((s) => s.ID).sort());
  const entries = await waitUntil('audit entry', async () => { const e = o.audit('watched'); return e.length >= 2 ? e : undefined; }, { timeoutMs: 10_000 });
  t.deepEqual(entries.map((e) => `${e.action}:${e.reason}`), ['register:event', 'register:consul-changed']);
});

test.serial('Redis down: registrations go on; buffered audit entries arrive when it is back', async (t) => {
  await redis.kill();
  await runContainer(docker, { runId, name: cname('noredis'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'noredis' }, labels: label });
  await waitUntil('registered without redis', async () => (await named('noredis')).length === 1, { timeoutMs: 15_000 });
  await redis.restart();
  const r = await waitUntil('entry flushed', async () => {
    const out = spawnSync(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'log', '--json', '--service', 'noredis', '--audit-redis', redis.url, '--audit-key', `audit:${runId}`], { encoding: 'utf8' });
    return out.stdout.includes('"register"') ? out.stdout : undefined;
  }, { timeoutMs: 20_000 });
  t.regex(r, /"originName":"[^"]*noredis"/);
});

test.serial('Consul agent killed and restarted: every service is back, no duplicates', async (t) => {
  const before = (await services()).map((s) => s.ID).sort();
  t.true(before.length >= 3);
  await consulEngine.kill();
  await consulEngine.restart(); // a dev agent restarts empty
  const after = await waitUntil('all back', async () => {
    const ids = (await services()).map((s) => s.ID).sort();
    return ids.length === before.length ? ids : undefined;
  }, { timeoutMs: 2000 + 5000 + 5000 });
  t.deepEqual(after, before);
});

test.serial('registrator SIGKILLed while containers start and stop, then restarted: no orphan, none missing', async (t) => {
  const keep = await runContainer(docker, { runId, name: cname('keep'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'keep' }, labels: label });
  const doomed = await runContainer(docker, { runId, name: cname('doomed'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'doomed' }, labels: label });
  await waitUntil('both', async () => (await named('keep')).length === 1 && (await named('doomed')).length === 1, { timeoutMs: 15_000 });
  await registrator.kill();
  await doomed.stop({ t: 0 });
  await runContainer(docker, { runId, name: cname('born'), publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'born' }, labels: label });
  t.is((await named('doomed')).length, 1); // nobody removed it yet
  await registrator.restart();
  await waitUntil('converged', async () => (await named('doomed')).length === 0 && (await named('born')).length === 1 && (await named('keep')).length === 1, { timeoutMs: 15_000 });
  // every running labelled container with a valid name is registered; nothing else of ours is
  const running = await docker.listContainers({ filters: { label: [`gantry.test=${runId}`] } });
  const regContainers = new Set((await services()).map((s) => s.Meta['docker-container']));
  for (const c of running) {
    const n = c.Names[0]!.replace(/^\//, '');
    if (['noname', 'badinterval', 'bigtag', 'nltag'].some((b) => n.endsWith(b))) continue;
    t.true(regContainers.has(n), `${n} registered`);
  }
  for (const n of regContainers) t.true(running.some((c) => c.Names[0] === `/${n}`), `${n} still running`);
  await keep.stop({ t: 0 });
});
