// The templater's no-reload paths against real engines (Consul, HAProxy in
// master-worker mode, dnsmasq): new services in spare backends, the exact one
// reload when the spares run out, the server state across a reload, and a
// Runtime API that fails after a reload (owed and retried, never recorded as applied).
import test from 'ava';
import net from 'node:net';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { socketCommand } from '../../test/harness/unix-socket.ts';
import { register, deregister, setCheck, namedServer, get, startTemplater, type NamedServer } from './helpers.ts';
import { startStack, type Stack } from './stack.ts';
import { parseServersState } from '../src/runtime/runtime-api.ts';

const track = manageEngines(test);

/** the templater's first reload (off the bootstrap config) confirmed and counted: HAProxy serves the new
 * config a moment before the templater has confirmed the reload, so a count read right after "served" can be one short */
const firstReloadCounted = (st: Stack): Promise<unknown> =>
  st.templater.waitForLog('first reload counted', (l) => String(l.msg).startsWith('rendered, checked, written and reloaded'));

/** show proc, retried while the master re-executes itself */
const procs = (st: Stack): Promise<{ reloads: number; workers: number[] }> =>
  waitUntil('show proc', async () => st.haproxy.processes().catch(() => undefined), { timeoutMs: 10_000 });

/** the running servers of a backend that are not in maintenance, as addr:port */
async function liveServers(st: Stack, backend: string): Promise<string[]> {
  const text = await st.haproxy.runtime(`show servers state ${backend}`);
  const servers = parseServersState(text).get(backend);
  if (!servers) return [];
  // running and not in maintenance (a `disabled` server made ready at runtime keeps showing bit 0x04 while it serves)
  return [...servers.values()].filter((s) => s.opState === 2 && (s.adminState & (0x01 | 0x02 | 0x20 | 0x40)) === 0).map((s) => `${s.addr}:${s.port}`).sort();
}

/** the passing instances Consul holds for a service, as addr:port */
async function consulInstances(st: Stack, service: string): Promise<string[]> {
  const res = await fetch(`${st.consul.addr}/v1/health/service/${service}?passing=true`);
  const list = await res.json() as Array<{ Service: { Address: string; Port: number } }>;
  return list.map((e) => `${e.Service.Address}:${e.Service.Port}`).sort();
}

/** the backend HAProxy routes a Host to (the host map) */
async function backendOf(st: Stack, host: string): Promise<string | undefined> {
  const text = await st.haproxy.runtime(`show map ${join(st.dir, 'state', 'haproxy-hosts.map')}`);
  return new RegExp(`^0x[0-9a-f]+ ${host.replaceAll('.', '\\.')} (\\S+)$`, 'm').exec(text)?.[1];
}

test('a new service goes live without a reload while spare backends last; exactly one reload when they run out, made right after the last one is live; the grown pool takes the next ones without a reload', async (t) => {
  const st = await startStack(t, track, ['--spare-backends', '2', '--allow-host-suffix', 'example.com']);
  const servers: NamedServer[] = await Promise.all(['orders', 'n1', 'n2', 'n3', 'n4'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [orders, ...news] = servers;
  const port = st.haproxy.httpPort;
  await register(st.consul.addr, { id: 'orders-1', name: 'orders', port: orders!.port, check: 'passing' });
  await waitUntil('orders served', async () => (await get(port, 'orders.gantry.test')).body === 'orders', { timeoutMs: 20_000 });
  await firstReloadCounted(st);
  const p0 = await procs(st);
  const reloads0 = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });
  t.is(await st.templater.metric('gantry_templater_spare_backends', { state: 'total' }), 2);

  // the first new service: a spare backend, the same worker, no reload
  const [n1, n2, n3, n4] = news as [NamedServer, NamedServer, NamedServer, NamedServer];
  await register(st.consul.addr, { id: 'n1-1', name: 'n1', port: n1.port, check: 'passing', tags: ['gantry.host=n1.example.com'] });
  await waitUntil('n1 served', async () => (await get(port, 'n1.gantry.test')).body === 'n1', { timeoutMs: 20_000 });
  t.is((await get(port, 'n1.example.com')).body, 'n1', 'its host tag too');
  t.regex((await backendOf(st, 'n1.gantry.test')) ?? '', /^gantry_spare_[12]$/);
  await waitUntil('n1 in DNS', async () => (await st.dnsmasq.resolve('n1.gantry.test').catch((): string[] => [])).includes('127.0.0.1'), { timeoutMs: 10_000 });
  const p1 = await procs(st);
  t.is(p1.reloads, p0.reloads, 'no reload while the spares last');
  t.deepEqual(p1.workers, p0.workers, 'show proc: the same worker');
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0);

  // the second takes the last spare: it is live through the Runtime API first, then one reload
  // (every service its own backend, the pool doubled) is made right away
  await register(st.consul.addr, { id: 'n2-1', name: 'n2', port: n2.port, check: 'passing' });
  const live = await st.templater.waitForLog('n2 live', (l) => String(l.msg).startsWith('applied through the Runtime API') && (l.spares as { used?: number } | undefined)?.used === 2);
  const grow = await st.templater.waitForLog('grow', (l) => String(l.msg).startsWith('spare backends used up'));
  t.true(Date.parse(String(grow.time)) >= Date.parse(String(live.time)), 'the reload comes after the service is live');
  await waitUntil('pool grown', async () => (await st.templater.metric('gantry_templater_spare_backends', { state: 'total' })) === 4, { timeoutMs: 20_000 });
  const p2 = await procs(st);
  t.is(p2.reloads, p0.reloads + 1, 'exactly one reload when the spares ran out');
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0 + 1);
  t.is(await backendOf(st, 'n1.gantry.test'), 'l7_n1.gantry.test', 'after the reload each service has its own backend');
  t.is(await backendOf(st, 'n2.gantry.test'), 'l7_n2.gantry.test');
  for (const s of [orders!, n1, n2]) t.is((await get(port, `${s.name}.gantry.test`)).body, s.name);

  // the grown pool (4) takes the next ones without a reload; a name never registered has no route
  for (const s of [n3, n4]) {
    await register(st.consul.addr, { id: `${s.name}-1`, name: s.name, port: s.port, check: 'passing' });
    await waitUntil(`${s.name} served`, async () => (await get(port, `${s.name}.gantry.test`)).body === s.name, { timeoutMs: 20_000 });
    t.regex((await backendOf(st, `${s.name}.gantry.test`)) ?? '', /^gantry_spare_[1-4]$/);
  }
  const p3 = await procs(st);
  t.is(p3.reloads, p2.reloads);
  t.deepEqual(p3.workers, p2.workers);
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0 + 1);
  t.is(await st.templater.metric('gantry_templater_spare_backends', { state: 'used' }), 2);
  t.is((await get(port, 'n5.gantry.test')).status, 404);
  t.is(await st.templater.metric('gantry_templater_check_failures_total'), 0);
});

test('removals reach HAProxy through the Runtime API with no safety-net timer (--resync-interval 0): one of several instances without checks, one with checks, a whole service; no reload; the service back fills its backend again', async (t) => {
  // registered before the templater starts, so its first render gives each service a backend of its
  // own: a service arriving after that render goes live in a spare backend, which with
  // --resync-interval 0 and spares left no reload ever replaces (as seen under load)
  const st = await startStack(t, track, ['--resync-interval', '0'], { startTemplater: false });
  const servers = await Promise.all(['a1', 'a2', 'b1', 'b2', 'c1'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [a1, a2, b1, b2, c1] = servers as [NamedServer, NamedServer, NamedServer, NamedServer, NamedServer];
  const port = st.haproxy.httpPort;
  await register(st.consul.addr, { id: 'plain-a1', name: 'plain', port: a1.port });
  await register(st.consul.addr, { id: 'plain-a2', name: 'plain', port: a2.port });
  await register(st.consul.addr, { id: 'checked-b1', name: 'checked', port: b1.port, check: 'passing' });
  await register(st.consul.addr, { id: 'checked-b2', name: 'checked', port: b2.port, check: 'passing' });
  await register(st.consul.addr, { id: 'gone-c1', name: 'gone', port: c1.port });
  st.templater = startTemplater(st.dir, st.args);
  track('templater', st.templater);
  const live = (backend: string, want: NamedServer[]): Promise<boolean> => liveServers(st, backend).then((l) => JSON.stringify(l) === JSON.stringify(want.map((s) => `127.0.0.1:${s.port}`).sort()));
  await waitUntil('all served', async () => await live('l7_plain.gantry.test', [a1, a2]) && await live('l7_checked.gantry.test', [b1, b2]) && await live('l7_gone.gantry.test', [c1]), { timeoutMs: 60_000 });
  await firstReloadCounted(st);
  const p0 = await procs(st);
  const reloads0 = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });

  await deregister(st.consul.addr, 'plain-a1');
  await waitUntil('plain: a1 out (no checks)', () => live('l7_plain.gantry.test', [a2]), { timeoutMs: 10_000 });
  await deregister(st.consul.addr, 'checked-b1');
  await waitUntil('checked: b1 out (with checks)', () => live('l7_checked.gantry.test', [b2]), { timeoutMs: 10_000 });
  await deregister(st.consul.addr, 'gone-c1');
  await waitUntil('gone: its backend emptied, its name out of the map', async () => await live('l7_gone.gantry.test', []) && (await backendOf(st, 'gone.gantry.test')) === undefined, { timeoutMs: 10_000 });
  t.is((await get(port, 'gone.gantry.test')).status, 404, 'no route for a removed service');
  const c1Hits = c1.hits;
  for (let i = 0; i < 6; i++) t.is((await get(port, 'plain.gantry.test')).body, 'a2');
  for (let i = 0; i < 6; i++) t.is((await get(port, 'checked.gantry.test')).body, 'b2');
  t.is(c1.hits, c1Hits);
  const p1 = await procs(st);
  t.is(p1.reloads, p0.reloads, 'no reload for removals');
  t.deepEqual(p1.workers, p0.workers, 'show proc: the same worker');

  // the removed service back: its retired backend filled again, no reload
  await register(st.consul.addr, { id: 'gone-c1', name: 'gone', port: c1.port });
  await waitUntil('gone back', async () => (await get(port, 'gone.gantry.test')).body === 'c1', { timeoutMs: 10_000 });
  t.is(await backendOf(st, 'gone.gantry.test'), 'l7_gone.gantry.test');
  const p2 = await procs(st);
  t.is(p2.reloads, p0.reloads);
  t.deepEqual(p2.workers, p0.workers);
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0);
  t.is(await st.templater.metric('gantry_templater_check_failures_total'), 0);
});

test('two backends changed in one window, one by the Runtime API and one needing a reload: HAProxy matches Consul after it', async (t) => {
  const st = await startStack(t, track);
  const servers = await Promise.all(['a1', 'a2', 'b1'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [a1, a2, b1] = servers as [NamedServer, NamedServer, NamedServer];
  const port = st.haproxy.httpPort;
  await register(st.consul.addr, { id: 'orders-a1', name: 'orders', port: a1.port, check: 'passing' });
  await register(st.consul.addr, { id: 'pay-b1', name: 'pay', port: b1.port, check: 'passing' });
  await waitUntil('both served', async () => (await get(port, 'orders.gantry.test')).body === 'a1' && (await get(port, 'pay.gantry.test')).body === 'b1', { timeoutMs: 20_000 });
  await firstReloadCounted(st);
  const reloads = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });
  // one window: orders' instance moves (slots only) and pay gets a path route (a reload)
  await register(st.consul.addr, { id: 'orders-a2', name: 'orders', port: a2.port, check: 'passing' });
  await deregister(st.consul.addr, 'orders-a1');
  await register(st.consul.addr, { id: 'pay-b1', name: 'pay', port: b1.port, check: 'passing', tags: ['gantry.path=/pay'] });
  await waitUntil('reloaded', async () => (await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' })) > reloads, { timeoutMs: 20_000 });
  await waitUntil('HAProxy matches Consul', async () =>
    JSON.stringify(await liveServers(st, 'l7_orders.gantry.test')) === JSON.stringify(await consulInstances(st, 'orders'))
    && JSON.stringify(await liveServers(st, 'l7_pay.gantry.test')) === JSON.stringify(await consulInstances(st, 'pay')), { timeoutMs: 20_000 });
  t.deepEqual(await liveServers(st, 'l7_orders.gantry.test'), [`127.0.0.1:${a2.port}`]);
  t.deepEqual(await liveServers(st, 'l7_pay.gantry.test'), [`127.0.0.1:${b1.port}`]);
  const hitsA1 = a1.hits;
  for (let i = 0; i < 10; i++) t.is((await get(port, 'orders.gantry.test')).body, 'a2');
  t.is(a1.hits, hitsA1);
  await waitUntil('the path route', async () => (await get(port, 'gantry.test', '/pay/x')).body === 'b1', { timeoutMs: 20_000 });
});

/** a unix socket in front of HAProxy's admin socket that can be made to fail (close every connection unanswered) */
async function failingProxy(path: string, upstream: string): Promise<{ failing: boolean; close(): Promise<void> }> {
  rmSync(path, { force: true });
  const state = { failing: false, close: async (): Promise<void> => { await new Promise<void>((r) => srv.close(() => r())); } };
  const srv = net.createServer({ allowHalfOpen: true }, (c) => {
    if (state.failing) { c.destroy(); return; }
    // one request a connection, as the CLI takes it: read it all, ask HAProxy, answer
    let request = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => { request += d; });
    c.on('error', () => undefined);
    c.on('end', () => {
      socketCommand(upstream, request, 15_000).then((answer) => c.end(answer), () => c.destroy());
    });
  });
  await new Promise<void>((resolve) => srv.listen(path, resolve));
  return state;
}

test('a Runtime API sync that fails after a reload is not recorded as applied: it is owed, reported and retried until HAProxy matches', async (t) => {
  const st = await startStack(t, track, [], { startTemplater: false });
  const proxySock = join(st.dir, 'admin-proxy.sock');
  const proxy = await failingProxy(proxySock, st.haproxy.adminSocket);
  t.teardown(() => proxy.close());
  const servers = await Promise.all(['a', 'b', 'p'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [a, b, p] = servers as [NamedServer, NamedServer, NamedServer];
  const stateDir = join(st.dir, 'state');
  const mapFile = join(stateDir, 'haproxy-hosts.map');
  const cfgFile = join(st.dir, 'templater.json');
  // the shipped template with HAProxy's real admin socket, the templater's Runtime API through the proxy
  writeFileSync(cfgFile, JSON.stringify({
    templates: [{
      name: 'haproxy', source: 'builtin:haproxy', destination: st.haproxy.cfgFile,
      check: ['haproxy', '-c', '-f', '{{path}}'], reload: { master: st.haproxy.masterSocket },
      runtime: { socket: proxySock, stateFile: join(st.dir, 'server-state'), hostMap: mapFile },
    }],
  }));
  const tp = startTemplater(st.dir, [
    '--consul-addr', st.consul.addr, '--config', cfgFile, '--haproxy-admin-socket', st.haproxy.adminSocket,
    '--haproxy-state-file', join(st.dir, 'server-state'), '--haproxy-map-file', mapFile, '--l7-bind', `127.0.0.1:${st.haproxy.httpPort}`,
    '--state-dir', stateDir, '--vip-manage=false', '--wait', '20ms:200ms', '--probe-interval', '300ms', '--log-level', 'debug',
  ]);
  track('templater', tp);
  const port = st.haproxy.httpPort;
  await register(st.consul.addr, { id: 'orders-a', name: 'orders', port: a.port, check: 'passing' });
  await waitUntil('orders served by a', async () => (await get(port, 'orders.gantry.test')).body === 'a', { timeoutMs: 20_000 });

  // the server-state file as a save would leave it while a serves (the templater saves after its commands)
  writeFileSync(join(st.dir, 'server-state'), await st.haproxy.runtime('show servers state'));
  // the Runtime API fails; a change that needs a reload (a path route) comes with orders moving from a to b
  const t0 = Date.now();
  proxy.failing = true;
  await register(st.consul.addr, { id: 'orders-b', name: 'orders', port: b.port, check: 'passing' });
  await deregister(st.consul.addr, 'orders-a');
  await register(st.consul.addr, { id: 'pay-p', name: 'pay', port: p.port, check: 'passing', tags: ['gantry.path=/pay'] });
  const failed = await tp.waitForLog('sync failed', (l) => String(l.msg).startsWith('Runtime API sync failed') && Date.parse(String(l.time)) >= t0);
  t.is(failed.template, 'haproxy');
  const health = await (await fetch(`${await tp.adminUrl()}/healthz`)).json() as { templates: Array<{ name: string; lastResult: string; syncOwed: boolean }> };
  const h = health.templates.find((x) => x.name === 'haproxy')!;
  t.true(h.syncOwed);
  t.not(h.lastResult, 'applied', 'a failed sync is not recorded as applied');
  t.true(await tp.metric('gantry_templater_runtime_updates_total', { result: 'error' }) >= 1);
  // the reload made while the Runtime API fails starts its workers from the render, not from the
  // server-state file saved when a still ran (HAProxy would put a back into a slot the render empties)
  const dropped = await tp.waitForLog('state file removed', (l) => l.stateFileRemoved === true && Date.parse(String(l.time)) >= t0);
  t.regex(String(dropped.msg), /new workers start from the render/);
  await waitUntil('b alone serves while the Runtime API fails', async () => (await liveServers(st, 'l7_orders.gantry.test')).join() === `127.0.0.1:${b.port}`, { timeoutMs: 20_000 });
  t.true(proxy.failing);

  // the Runtime API is back: the owed sync is retried and HAProxy matches Consul
  proxy.failing = false;
  const back = Date.now();
  await tp.waitForLog('owed sync done', (l) => String(l.msg).startsWith('owed Runtime API sync done') && Date.parse(String(l.time)) >= back, 60_000);
  t.deepEqual(await liveServers(st, 'l7_orders.gantry.test'), [`127.0.0.1:${b.port}`]);
  const hitsA = a.hits;
  for (let i = 0; i < 6; i++) t.is((await get(port, 'orders.gantry.test')).body, 'b');
  t.is(a.hits, hitsA);
  const after = await (await fetch(`${await tp.adminUrl()}/healthz`)).json() as { templates: Array<{ name: string; syncOwed: boolean }> };
  t.false(after.templates.find((x) => x.name === 'haproxy')!.syncOwed);
});

test('a service living in a spare backend takes instance changes through the Runtime API: an instance swapped for another in one Consul transaction (one render sees both), no request reaching the one that left, a check going critical; its host tag follows; no reload', async (t) => {
  const st = await startStack(t, track, ['--allow-host-suffix', 'example.com']);
  const servers = await Promise.all(['z', 'a', 'b', 'c'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [z, a, b, c] = servers as [NamedServer, NamedServer, NamedServer, NamedServer];
  const port = st.haproxy.httpPort;
  await register(st.consul.addr, { id: 'zz', name: 'zz', port: z.port, check: 'passing' });
  await firstReloadCounted(st);
  // orders arrives after the first render: it goes live in a spare backend
  await register(st.consul.addr, { id: 'orders-a', name: 'orders', port: a.port, check: 'passing', tags: ['gantry.host=shop.example.com'] });
  await register(st.consul.addr, { id: 'orders-b', name: 'orders', port: b.port, check: 'passing' });
  const seen = async (host = 'orders.gantry.test'): Promise<string> => {
    const s = new Set<string>();
    for (let i = 0; i < 6; i++) s.add((await get(port, host)).body);
    return [...s].sort().join(',');
  };
  await waitUntil('a and b serve', async () => (await seen()) === 'a,b', { timeoutMs: 20_000 });
  t.regex((await backendOf(st, 'orders.gantry.test')) ?? '', /^gantry_spare_\d+$/);
  const p0 = await procs(st);
  const reloads0 = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });

  // c in and a out in one transaction: one render sees both (a's slot goes to maintenance, c takes another)
  const node = 'gantry-test-node';
  const res = await fetch(`${st.consul.addr}/v1/txn`, {
    method: 'PUT', body: JSON.stringify([
      { Service: { Verb: 'set', Node: node, Service: { ID: 'orders-c', Service: 'orders', Address: '127.0.0.1', Port: c.port, Tags: ['gantry.host=shop.example.com'] } } },
      { Check: { Verb: 'set', Check: { Node: node, CheckID: 'check:orders-c', Name: 'test', ServiceID: 'orders-c', Status: 'passing' } } },
      { Service: { Verb: 'delete', Node: node, Service: { ID: 'orders-a', Service: 'orders' } } },
    ]),
  });
  t.is(res.status, 200, await res.text());
  await waitUntil('b and c serve, a does not', async () => (await seen()) === 'b,c', { timeoutMs: 20_000 });
  const hitsA = a.hits;
  t.is(await seen(), 'b,c');
  t.is(a.hits, hitsA, 'no request reaches a after it left');
  await setCheck(st.consul.addr, 'orders-b', 'critical');
  await waitUntil('b out', async () => (await seen()) === 'c', { timeoutMs: 20_000 });
  t.is(await seen('shop.example.com'), 'c', 'its host tag, still carried by c');
  const p1 = await procs(st);
  t.is(p1.reloads, p0.reloads, 'no reload');
  t.deepEqual(p1.workers, p0.workers);
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0);
});
