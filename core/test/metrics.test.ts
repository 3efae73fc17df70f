import test from 'ava';
import { createRegistry, startAdminServer, Counter, splitHostPort } from '../src/metrics.ts';

test('admin endpoint serves Prometheus metrics and health', async (t) => {
  const registry = createRegistry('test');
  const c = new Counter({ name: 'gantry_test_things_total', help: 'things', registers: [registry] });
  c.inc(3);
  let healthy = true;
  const admin = await startAdminServer({ addr: '127.0.0.1:0', registry, health: () => ({ ok: healthy, consul: healthy ? 'up' : 'down' }) });
  const metrics = await (await fetch(`${admin.url}/metrics`)).text();
  t.regex(metrics, /gantry_test_things_total\{component="test"\} 3/);
  t.regex(metrics, /gantry_process_resident_memory_bytes/);
  const ok = await fetch(`${admin.url}/healthz`);
  t.is(ok.status, 200);
  healthy = false;
  const bad = await fetch(`${admin.url}/healthz`);
  t.is(bad.status, 503);
  t.deepEqual(await bad.json(), { ok: false, consul: 'down' });
  t.is((await fetch(`${admin.url}/nope`)).status, 404);
  await admin.close();
});

test('host:port parsing', (t) => {
  t.deepEqual(splitHostPort('127.0.0.1:9100'), { host: '127.0.0.1', port: 9100 });
  t.deepEqual(splitHostPort('[::1]:80'), { host: '::1', port: 80 });
  t.deepEqual(splitHostPort(':9100'), { host: '0.0.0.0', port: 9100 });
  t.throws(() => splitHostPort('localhost'));
  t.throws(() => splitHostPort('h:70000'));
});
