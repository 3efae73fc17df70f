// `gantry templater` as it runs, against real engines: Consul (services written
// straight into it), HAProxy in master-worker mode, dnsmasq reading the hosts
// file, Redis behind an L4 VIP.
import test from 'ava';
import net from 'node:net';
import http from 'node:http';
import { readFileSync, existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { manageEngines } from '../../test/harness/ava.ts';
import { startRedis } from '../../test/harness/engines/redis.ts';
import { waitUntil, sleep } from '../../test/harness/process.ts';
import { register, deregister, setCheck, namedServer, get, gantryArgs, startTemplater } from './helpers.ts';
import { startStack, vipsOnLo } from './stack.ts';

const track = manageEngines(test);

/** the master's reload count; retried, since the master re-executes itself on a reload */
const reloadsOf = (h: { processes(): Promise<{ reloads: number }> }): Promise<number> =>
  waitUntil('show proc', async () => { const p = await h.processes().catch(() => undefined); return p ? p.reloads + 1 : undefined; }, { timeoutMs: 10_000 }).then((n) => n - 1);

/** an HTTP server answering with the request headers it got */
async function headerEcho(): Promise<{ port: number; close(): Promise<void> }> {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`).join('\n'));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { port: (srv.address() as { port: number }).port, close: () => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }) };
}

function redisPing(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let out = '';
    s.setTimeout(3000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write('PING\r\nQUIT\r\n'));
    s.on('data', (d) => { out += d.toString(); });
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

test('L7 by Host, names in dnsmasq, L4 Redis on its VIP; instance changes and new L7 services through the Runtime API, new L4 services by reload; X-Forwarded-For and request logs', async (t) => {
  const st = await startStack(t, track, ['--allow-host-suffix', 'example.com']);
  const a = await namedServer('a');
  const b = await namedServer('b');
  const c = await namedServer('c');
  t.teardown(async () => { await a.close(); await b.close(); await c.close(); });
  const redis = await startRedis();
  track('redis', redis);
  const port = st.haproxy.httpPort;

  await register(st.consul.addr, { id: 'orders-a', name: 'orders', port: a.port, check: 'passing', tags: ['gantry.host=shop.example.com'] });
  await register(st.consul.addr, { id: 'orders-b', name: 'orders', port: b.port, check: 'passing' });
  await register(st.consul.addr, { id: 'redis-1', name: 'redis', port: redis.port, check: 'passing', tags: ['gantry.tcp=6379', 'gantry.tenant=dev1'] });

  // the three registrations may reach the templater as more than one change, and while a
  // reload finishes an old worker may still answer a new connection: within 20 s a round of
  // requests (round robin) must be answered by both instances and nothing else
  const rounds: string[][] = [];
  await waitUntil('both orders instances, and only they, through HAProxy', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await get(port, 'orders.gantry.test')).body);
    rounds.push([...seen].sort());
    return seen.size === 2 && seen.has('a') && seen.has('b');
  }, { timeoutMs: 20_000 });
  t.deepEqual(rounds.at(-1), ['a', 'b']);
  t.is((await get(port, 'shop.example.com')).status, 200);
  t.is((await get(port, 'nothing.gantry.test')).status, 404);

  // DNS: L7 names at the L7 address, the L4 name (and its tenant aliases) at its VIP
  await waitUntil('dnsmasq answers', async () => (await st.dnsmasq.resolve('orders.gantry.test').catch((): string[] => [])).includes('127.0.0.1'), { timeoutMs: 10_000 });
  // the hosts file may be rendered from a state without redis first: wait for its name too
  const [vip] = await waitUntil('dnsmasq answers for redis', async () => { const a = await st.dnsmasq.resolve('dev1-redis.gantry.test').catch((): string[] => []); return a.length ? a : undefined; }, { timeoutMs: 10_000 });
  t.truthy(vip);
  t.deepEqual(await st.dnsmasq.resolve('dev1.redis'), [vip!]);
  t.deepEqual(await st.dnsmasq.resolve('shop.example.com'), ['127.0.0.1']);
  t.true(vipsOnLo(st.pool).includes(vip!));
  // the hosts file may be written before HAProxy's reload binds the VIP: wait for the answer, as for the cache below
  await waitUntil('redis through its VIP', async () => /^\+PONG/.test(await redisPing(vip!, 6379).catch(() => '')), { timeoutMs: 20_000 });
  t.regex(await redisPing(vip!, 6379), /^\+PONG/);

  const cfg = readFileSync(st.haproxy.cfgFile, 'utf8');
  t.regex(cfg, /^\s*hard-stop-after 30s$/m);
  // a connection to an instance whose address is gone fails within 1 s, and is redispatched
  t.regex(cfg, /^\s*timeout connect 1000ms$/m);
  t.regex(cfg, /^\s*mworker-max-reloads 5$/m);
  t.regex(cfg, /^\s*server-state-file /m);

  // instances only: Runtime API, no reload
  const reloads = await reloadsOf(st.haproxy);
  // c (with a's host tag) comes before a goes, so no state the templater may see between
  // the two writes changes the service's hosts: each is an instance change
  await register(st.consul.addr, { id: 'orders-c', name: 'orders', port: c.port, check: 'passing', tags: ['gantry.host=shop.example.com'] });
  await deregister(st.consul.addr, 'orders-a');
  await waitUntil('b and c serve, a does not', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await get(port, 'orders.gantry.test')).body);
    return seen.size === 2 && seen.has('b') && seen.has('c');
  }, { timeoutMs: 20_000 });
  await st.templater.waitForLog('runtime path', (l) => String(l.msg).includes('Runtime API, no reload'));
  const hitsA = a.hits;
  const after = new Set<string>();
  for (let i = 0; i < 10; i++) after.add((await get(port, 'orders.gantry.test')).body);
  t.deepEqual([...after].sort(), ['b', 'c']);
  t.is(a.hits, hitsA, 'no request reaches a after it left');
  // a health check going critical takes the instance out, still without a reload
  await setCheck(st.consul.addr, 'orders-b', 'critical');
  await waitUntil('b out', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await get(port, 'orders.gantry.test')).body);
    return seen.size === 1 && seen.has('c');
  }, { timeoutMs: 20_000 });
  t.is(await reloadsOf(st.haproxy), reloads);
  t.true(existsSync(`${st.dir}/server-state`));

  // more instances than slots: servers added at runtime, still no reload
  const extra = await Promise.all([1, 2, 3, 4].map((i) => namedServer(`x${i}`)));
  t.teardown(async () => { for (const s of extra) await s.close(); });
  for (const [i, s] of extra.entries()) await register(st.consul.addr, { id: `orders-x${i}`, name: 'orders', port: s.port, check: 'passing', tags: ['gantry.host=shop.example.com'] });
  await waitUntil('x servers', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await get(port, 'orders.gantry.test')).body);
    return seen.size === 5;
  }, { timeoutMs: 20_000 });
  t.is(await reloadsOf(st.haproxy), reloads);
  t.regex(await st.haproxy.runtime('show servers state l7_orders.gantry.test'), / s6 /);

  // a new service: a spare backend and the host map, still no reload, and a new name in DNS
  await register(st.consul.addr, { id: 'pay-1', name: 'payments', port: a.port, check: 'passing' });
  await waitUntil('payments', async () => (await get(port, 'payments.gantry.test')).body === 'a', { timeoutMs: 20_000 });
  await waitUntil('payments in DNS', async () => (await st.dnsmasq.resolve('payments.gantry.test').catch((): string[] => [])).includes('127.0.0.1'), { timeoutMs: 10_000 });
  t.is(await reloadsOf(st.haproxy), reloads);
  // a new L4 service needs a listener: a reload; the runtime-only changes are still there after it
  const redis2 = await startRedis();
  track('redis2', redis2);
  await register(st.consul.addr, { id: 'redis-2', name: 'cache', port: redis2.port, check: 'passing', tags: ['gantry.tcp=6380'] });
  const [cacheVip] = await waitUntil('cache in DNS', async () => { const a = await st.dnsmasq.resolve('cache.gantry.test').catch((): string[] => []); return a.length ? a : undefined; }, { timeoutMs: 20_000 });
  await waitUntil('cache through its VIP', async () => /^\+PONG/.test(await redisPing(cacheVip!, 6380).catch(() => '')), { timeoutMs: 20_000 });
  t.true((await reloadsOf(st.haproxy)) > reloads);
  t.is((await get(port, 'orders.gantry.test')).status, 200);
  t.is((await get(port, 'payments.gantry.test')).body, 'a');

  // what HAProxy users expect of a front door: X-Forwarded-For to the backend, a request log
  const echo = await headerEcho();
  t.teardown(() => echo.close());
  await register(st.consul.addr, { id: 'echo-1', name: 'echo', port: echo.port, check: 'passing' });
  await waitUntil('echo', async () => (await get(port, 'echo.gantry.test')).status === 200, { timeoutMs: 20_000 });
  t.regex((await get(port, 'echo.gantry.test', '/xff')).body, /^x-forwarded-for: 127\.0\.0\.1$/m);
  await waitUntil('httplog line on stdout', async () => /gantry_l7 \S+\/s\d+ .* "GET \/xff HTTP\/1\.1"/.test(st.haproxy.tail(200)), { timeoutMs: 10_000 });
  t.true(await st.templater.metric('gantry_templater_runtime_updates_total', { result: 'ok' }) >= 2);
  t.is(await st.templater.metric('gantry_templater_check_failures_total'), 0);
});

test('a template with a syntax error at start: exit 2 with file, line and column', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-tpl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tpl = join(dir, 'bad.hbs');
  writeFileSync(tpl, 'global\n    maxconn 10\n{{#each services}}\n  {{name}\n{{/each}}\n');
  const r = spawnSync(process.execPath, gantryArgs('templater', ['--template', `${tpl}:${join(dir, 'out')}`, '--consul-addr', 'http://127.0.0.1:1']), { encoding: 'utf8', timeout: 30_000 });
  t.is(r.status, 2);
  t.true(r.stderr.includes(`${tpl}:4:9:`), r.stderr);
  t.regex(r.stderr, /Parse error/);
  const r2 = spawnSync(process.execPath, gantryArgs('templater', ['--haproxy-cfg', join(dir, 'x.cfg'), '--wait', '5s:1s']), { encoding: 'utf8', timeout: 30_000 });
  t.is(r2.status, 2);
  t.regex(r2.stderr, /--wait.*max is shorter than min/);
});

test('a template edited into a running templater: an error is reported and the last good template keeps rendering', async (t) => {
  const st = await startStack(t, track, [], { startTemplater: false });
  const tpl = join(st.dir, 'svc.hbs');
  const out = join(st.dir, 'svc.txt');
  writeFileSync(tpl, '{{#each services}}{{name}}={{len instances}}\n{{/each}}');
  await register(st.consul.addr, { id: 'one', name: 'one', check: 'passing' });
  const tp = startTemplater(st.dir, ['--consul-addr', st.consul.addr, '--template', `${tpl}:${out}`, '--wait', '10ms:100ms', '--state-dir', join(st.dir, 'state'), '--vip-manage=false']);
  track('templater', tp);
  await waitUntil('first render', async () => existsSync(out) && readFileSync(out, 'utf8') === 'one=1\n', { timeoutMs: 20_000 });

  writeFileSync(tpl, '{{#each services}}{{name}}\n{{/if}}\n');
  const err = await tp.waitForLog('template error', (l) => String(l.msg).startsWith('edited template has an error'));
  t.regex(String(err.err), /^.*svc\.hbs:1:\d+: each doesn't match if$/);
  t.true(String(err.err).startsWith(`${tpl}:1:`));
  t.is(await tp.metric('gantry_templater_template_error'), 1);
  t.is(readFileSync(out, 'utf8'), 'one=1\n');
  // Consul changes go on being rendered, with the last good template
  await register(st.consul.addr, { id: 'two', name: 'two', check: 'passing' });
  await waitUntil('second render', async () => readFileSync(out, 'utf8') === 'one=1\ntwo=1\n', { timeoutMs: 20_000 });

  writeFileSync(tpl, '{{#each services}}[{{name}}]{{/each}}\n');
  await waitUntil('fixed template', async () => readFileSync(out, 'utf8') === '[one][two]\n', { timeoutMs: 20_000 });
  t.is(await tp.metric('gantry_templater_template_error'), 0);
});

test('an empty catalog is not rendered (elections, a wiped dev agent) unless allowed', async (t) => {
  const st = await startStack(t, track);
  await st.templater.waitForLog('empty refused', (l) => String(l.msg).startsWith('empty render refused'));
  t.is(readFileSync(st.hostsFile, 'utf8'), '');
  t.regex(readFileSync(st.haproxy.cfgFile, 'utf8'), /bootstrap/);
  t.true(await st.templater.metric('gantry_templater_renders_total', { result: 'empty' }) >= 1);
  await register(st.consul.addr, { id: 'w1', name: 'web', check: 'passing' });
  await waitUntil('hosts written', async () => readFileSync(st.hostsFile, 'utf8').includes('web.gantry.test'), { timeoutMs: 20_000 });
});

test('Consul down: the last config keeps serving; Consul back empty: refused; services back: applied', async (t) => {
  const st = await startStack(t, track);
  const a = await namedServer('a');
  t.teardown(() => a.close());
  await register(st.consul.addr, { id: 'o1', name: 'orders', port: a.port, check: 'passing' });
  const port = st.haproxy.httpPort;
  await waitUntil('orders', async () => (await get(port, 'orders.gantry.test')).status === 200, { timeoutMs: 20_000 });
  await waitUntil('hosts', async () => readFileSync(st.hostsFile, 'utf8').includes('orders.gantry.test'), { timeoutMs: 20_000 });
  const cfg = readFileSync(st.haproxy.cfgFile, 'utf8');
  const hosts = readFileSync(st.hostsFile, 'utf8');
  await st.consul.kill();
  await waitUntil('consul error reported', async () => {
    const h = await (await fetch(`${await st.templater.adminUrl()}/healthz`)).json() as { consul: { lastError: string | null } };
    return h.consul.lastError !== null;
  }, { timeoutMs: 20_000 });
  // and again after that: the outage has lasted through the watcher's retries, nothing rendered
  const errors = async (): Promise<number> => [...(await (await fetch(`${await st.templater.adminUrl()}/metrics`)).text()).matchAll(/^gantry_templater_consul_errors_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  const seen = await errors();
  await waitUntil('more failed Consul requests', async () => (await errors()) > seen, { timeoutMs: 20_000 });
  t.is((await get(port, 'orders.gantry.test')).body, 'a');
  t.is(readFileSync(st.haproxy.cfgFile, 'utf8'), cfg);
  t.is(readFileSync(st.hostsFile, 'utf8'), hosts);
  // a dev agent comes back with nothing in it: the empty render is refused
  await st.consul.restart();
  await st.templater.waitForLog('empty refused', (l) => String(l.msg).startsWith('empty render refused'), 30_000);
  t.is((await get(port, 'orders.gantry.test')).body, 'a');
  t.is(readFileSync(st.hostsFile, 'utf8'), hosts);
  await register(st.consul.addr, { id: 'o2', name: 'orders', port: a.port, check: 'passing' });
  await register(st.consul.addr, { id: 'n1', name: 'news', port: a.port, check: 'passing' });
  await waitUntil('news', async () => (await get(port, 'news.gantry.test')).status === 200, { timeoutMs: 20_000 });
});

test('HAProxy killed: reported; what changed meanwhile is applied when it is back', async (t) => {
  const st = await startStack(t, track);
  const a = await namedServer('a');
  t.teardown(() => a.close());
  await register(st.consul.addr, { id: 'o1', name: 'orders', port: a.port, check: 'passing' });
  const port = st.haproxy.httpPort;
  await waitUntil('orders', async () => (await get(port, 'orders.gantry.test')).status === 200, { timeoutMs: 20_000 });
  await st.haproxy.kill();
  await st.templater.waitForLog('down reported', (l) => String(l.msg).startsWith('reload target is down'));
  const health = await fetch(`${await st.templater.adminUrl()}/healthz`);
  t.is(health.status, 503);
  t.is(await st.templater.metric('gantry_templater_target_up', { template: 'haproxy' }), 0);
  // changes while it is down: an instance moves, a service comes
  const b = await namedServer('b');
  t.teardown(() => b.close());
  await deregister(st.consul.addr, 'o1');
  await register(st.consul.addr, { id: 'o2', name: 'orders', port: b.port, check: 'passing' });
  await register(st.consul.addr, { id: 'p1', name: 'payments', port: b.port, check: 'passing' });
  await waitUntil('render written while down', async () => readFileSync(st.haproxy.cfgFile, 'utf8').includes('l7_payments.gantry.test'), { timeoutMs: 20_000 });
  // a supervisor starts it again, from the file on disk
  await st.haproxy.restart();
  await st.templater.waitForLog('back', (l) => String(l.msg).startsWith('reload target is back'));
  await waitUntil('payments', async () => (await get(port, 'payments.gantry.test')).body === 'b', { timeoutMs: 20_000 });
  t.is((await get(port, 'orders.gantry.test')).body, 'b');
  await waitUntil('healthy', async () => (await fetch(`${await st.templater.adminUrl()}/healthz`)).status === 200, { timeoutMs: 10_000 });
});

test('the same HAProxy master away and back (frozen past two probes, as while it re-executes a reload someone else asked): reported, then synced through the Runtime API with no reload of its own', async (t) => {
  const st = await startStack(t, track, ['--probe-interval', '200ms']);
  const a = await namedServer('a');
  const b = await namedServer('b');
  t.teardown(async () => { await a.close(); await b.close(); });
  await register(st.consul.addr, { id: 'o1', name: 'orders', port: a.port, check: 'passing' });
  const port = st.haproxy.httpPort;
  await waitUntil('orders', async () => (await get(port, 'orders.gantry.test')).body === 'a', { timeoutMs: 20_000 });
  await st.templater.waitForLog('first reload', (l) => String(l.msg).startsWith('rendered, checked, written and reloaded'));
  // nothing left in flight (a reload sent to a frozen master would be owed, and made, when it is back):
  // no log line for 1.5 s, the master answering with one worker and no old one, and the reload count
  // the same before and after that (a reload under way logs only once done: on a loaded machine the
  // log alone can go quiet for 1.5 s in the middle of one, which the frozen master would then hold)
  let seen = -1;
  await waitUntil('the templater idle for 1.5 s', async () => {
    const reloads = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });
    await sleep(1500);
    const n = st.templater.logs().length;
    const idle = n === seen;
    seen = n;
    if (!idle) return false;
    const procs = await st.haproxy.processes();
    return procs.workers.length === 1 && procs.oldWorkers.length === 0
      && await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }) === reloads && st.templater.logs().length === n;
  }, { timeoutMs: 30_000 });
  const reloads0 = await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' });
  const master = Number(readFileSync(st.haproxy.pidFile, 'utf8').trim());
  const workers0 = (await st.haproxy.processes()).workers;
  process.kill(master, 'SIGSTOP');
  let resumed = false;
  t.teardown(() => { if (!resumed) process.kill(master, 'SIGCONT'); });
  await st.templater.waitForLog('down reported', (l) => String(l.msg).startsWith('reload target is down'), 30_000);
  // the workers serve on; a change meanwhile goes through the Runtime API (the worker's socket)
  await register(st.consul.addr, { id: 'o1', name: 'orders', port: b.port, check: 'passing' });
  await waitUntil('orders moved while the master is away', async () => (await get(port, 'orders.gantry.test')).body === 'b', { timeoutMs: 20_000 });
  process.kill(master, 'SIGCONT');
  resumed = true;
  const back = await st.templater.waitForLog('back', (l) => String(l.msg).startsWith('reload target is back'), 30_000);
  t.is(back.restarted, false);
  t.log(st.templater.logs().slice(-12).map((l) => String(l.msg)).join(' | '));
  await st.templater.waitForLog('synced', (l) => String(l.msg).startsWith('owed Runtime API sync done'), 20_000);
  t.is(await st.templater.metric('gantry_templater_reloads_total', { template: 'haproxy' }), reloads0, 'no reload on top of the same master');
  t.deepEqual((await st.haproxy.processes()).workers, workers0);
  t.is(await st.templater.metric('gantry_templater_target_up', { template: 'haproxy' }), 1);
  for (let i = 0; i < 4; i++) t.is((await get(port, 'orders.gantry.test')).body, 'b');
});

test('a reload HAProxy refuses: old workers keep serving, the failure is counted, the templater goes on', async (t) => {
  const st = await startStack(t, track, ['--stats-bind', '192.0.2.55:8404']);
  // the stats bind is on an address this host does not have: haproxy -c accepts it, the reload fails
  const a = await namedServer('a');
  t.teardown(() => a.close());
  await register(st.consul.addr, { id: 'o1', name: 'orders', port: a.port, check: 'passing' });
  await st.templater.waitForLog('reload failed', (l) => String(l.msg).startsWith('reload failed'));
  t.true(await st.templater.metric('gantry_templater_reload_failures_total', { reason: 'rejected' }) >= 1);
  // the bootstrap config (the last good file) is back on disk (a retry may be writing the render
  // again at this moment, to restore it again when its reload fails), and still serving
  await waitUntil('the last good file back', async () => /bootstrap/.test(readFileSync(st.haproxy.cfgFile, 'utf8')), { timeoutMs: 10_000 });
  t.is((await get(st.haproxy.httpPort, 'orders.gantry.test')).body, 'bootstrap');
  t.false(st.templater.proc.exited());
  // the same render is tried again later, with backoff (not in a storm, not never)
  await waitUntil('retried', async () => (await st.templater.metric('gantry_templater_reload_failures_total', { reason: 'rejected' })) >= 2, { timeoutMs: 20_000 });
  await waitUntil('the last good file back again', async () => /bootstrap/.test(readFileSync(st.haproxy.cfgFile, 'utf8')), { timeoutMs: 10_000 });
  // the hosts file (another template) is applied regardless
  await waitUntil('hosts', async () => readFileSync(st.hostsFile, 'utf8').includes('orders.gantry.test'), { timeoutMs: 20_000 });
});
