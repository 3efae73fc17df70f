// Names no container can hijack, and VIPs given back, against real engines
// (Consul, HAProxy, dnsmasq, VIPs on lo).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { register, namedServer, get } from './helpers.ts';
import { startStack, vipsOnLo } from './stack.ts';

const track = manageEngines(test);

test('host names from tags: outside --domain and --allow-host-suffix refused and reported; two claims: the earliest registration keeps it, the conflict is exposed', async (t) => {
  const st = await startStack(t, track, ['--allow-host-suffix', 'example.com']);
  const zeta = await namedServer('zeta');
  const alpha = await namedServer('alpha');
  t.teardown(async () => { await zeta.close(); await alpha.close(); });
  const port = st.haproxy.httpPort;
  // zeta registers first; alpha (which sorts first) claims the same name later, and a name outside
  await register(st.consul.addr, { id: 'zeta-1', name: 'zeta', port: zeta.port, check: 'passing', tags: ['gantry.host=shop.example.com'] });
  await waitUntil('zeta served', async () => (await get(port, 'shop.example.com')).body === 'zeta', { timeoutMs: 20_000 });
  await register(st.consul.addr, { id: 'alpha-1', name: 'alpha', port: alpha.port, check: 'passing', tags: ['gantry.host=shop.example.com', 'gantry.host=login.bank.test'] });
  await waitUntil('alpha served', async () => (await get(port, 'alpha.gantry.test')).body === 'alpha', { timeoutMs: 20_000 });

  const refused = await st.templater.waitForLog('refused', (l) => l.reason === 'host_outside');
  t.is(refused.service, 'alpha');
  t.regex(String(refused.detail), /host login\.bank\.test of service alpha instance alpha-1 is outside --domain gantry\.test and --allow-host-suffix example\.com/);
  t.is(await st.templater.metric('gantry_templater_hosts_refused_total'), 1);
  t.is((await get(port, 'login.bank.test')).status, 404);
  t.deepEqual(await st.dnsmasq.resolve('login.bank.test').catch((): string[] => []), []);

  const conflict = await st.templater.waitForLog('conflict', (l) => l.reason === 'host_conflict');
  t.is(conflict.service, 'alpha');
  t.regex(String(conflict.detail), /kept by service zeta instance zeta-1 \(CreateIndex \d+\), the earlier registration/);
  t.is(await st.templater.metric('gantry_templater_host_conflicts'), 1);
  const health = await (await fetch(`${await st.templater.adminUrl()}/healthz`)).json() as { hostConflicts: Array<{ host: string; kept: { service: string; instance: string; createIndex: number }; refused: Array<{ service: string; createIndex: number }> }> };
  t.is(health.hostConflicts.length, 1);
  const c = health.hostConflicts[0]!;
  t.is(c.host, 'shop.example.com');
  t.is(c.kept.service, 'zeta');
  t.deepEqual(c.refused.map((r) => r.service), ['alpha']);
  t.true(c.kept.createIndex < c.refused[0]!.createIndex);
  for (let i = 0; i < 5; i++) t.is((await get(port, 'shop.example.com')).body, 'zeta');
});

test('the VIP pool gives an address back after the grace period when a service loses its gantry.tcp tag', async (t) => {
  const st = await startStack(t, track, ['--vip-grace', '15s']);
  const web = await namedServer('web');
  t.teardown(() => web.close());
  await register(st.consul.addr, { id: 'db-1', name: 'db', port: web.port, check: 'passing', tags: ['gantry.tcp=7000'] });
  const [vip] = await waitUntil('db VIP in DNS', async () => { const a = await st.dnsmasq.resolve('db.gantry.test').catch((): string[] => []); return a.length && a[0] !== '127.0.0.1' ? a : undefined; }, { timeoutMs: 20_000 });
  const vipsFile = join(st.dir, 'state', 'vips.json');
  const assignments = (): Record<string, { vip: string }> => (JSON.parse(readFileSync(vipsFile, 'utf8')) as { assignments: Record<string, { vip: string }> }).assignments;
  t.is(assignments().db?.vip, vip);
  t.true(vipsOnLo(st.pool).includes(vip!));
  const free0 = await st.templater.metric('gantry_templater_vip_pool_free');

  // the tag goes: the service is L7 now; its VIP is kept for the grace period, then given back
  await register(st.consul.addr, { id: 'db-1', name: 'db', port: web.port, check: 'passing' });
  await waitUntil('db at L7', async () => (await get(st.haproxy.httpPort, 'db.gantry.test')).body === 'web', { timeoutMs: 20_000 });
  t.is(assignments().db?.vip, vip, 'still reserved during the grace period');
  const freed = await st.templater.waitForLog('VIP given back', (l) => String(l.msg).startsWith('VIP given back to the pool'), 40_000);
  t.is(freed.vip, vip);
  t.is(freed.group, 'db');
  t.is(freed.pool, st.pool);
  t.is(assignments().db, undefined);
  t.is(await st.templater.metric('gantry_templater_vip_released_total'), 1);
  t.is(await st.templater.metric('gantry_templater_vip_pool_free'), free0 + 1);
  await waitUntil('VIP off lo', async () => !vipsOnLo(st.pool).includes(vip!), { timeoutMs: 10_000 });
});
