// `gantry registrator --static DIR` against a real Consul agent: services of
// machines without an agent, from JSON and YAML files, watched: an edit applies,
// a removed entry is deregistered, an invalid entry is reported with file and
// line:column and skipped, a half-written file deregisters nothing, a removed
// file removes its services; the agent runs the HTTP check.
import test from 'ava';
import { writeFileSync, renameSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil, tempDir, removeDir } from '../../test/harness/process.ts';

const track = manageEngines(test);
let consulEngine: ConsulEngine;
let consul: ConsulClient;

interface AgentService { ID: string; Service: string; Address: string; Port: number; Tags: string[]; Meta: Record<string, string> }
const services = async (): Promise<Record<string, AgentService>> =>
  (await consul.request<Record<string, AgentService>>('GET', '/v1/agent/services', { query: { filter: 'Meta["gantry-source"] == "static"' } })).body ?? {};
const ids = async (): Promise<string[]> => Object.keys(await services()).sort();

/** written as editors do: a new file renamed over the old one */
function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp~`, text);
  renameSync(`${file}.tmp~`, file);
}

test.before(async () => {
  consulEngine = await startConsul();
  track('consul', consulEngine);
  consul = createConsul({ addr: consulEngine.addr });
});
test.after.always(() => consul?.close());

test('static files: JSON and YAML applied and watched; invalid entries reported with file:line:col; partial writes deregister nothing', async (t) => {
  const dir = tempDir('static');
  t.teardown(() => removeDir(dir));
  mkdirSync(join(dir, 'vms'));
  const health = createServer((_req, res) => { res.end('ok'); });
  await new Promise<void>((r) => health.listen(0, '127.0.0.1', r));
  t.teardown(() => health.close());
  const hport = (health.address() as { port: number }).port;
  const json = join(dir, 'vms', 'billing.json');
  const yaml = join(dir, 'vms', 'ledger.yaml');
  writeAtomic(json, JSON.stringify({ services: [
    { name: 'billing', id: 'billing-1', address: '127.0.0.1', port: hport, tags: ['vm'], meta: { team: 'pay' }, checks: [{ http: `http://127.0.0.1:${hport}/health`, interval: '1s' }] },
    { name: 'billing', id: 'billing-2', address: '10.3.0.6', port: 8080 },
  ] }, null, 2));
  writeAtomic(yaml, 'services:\n  - name: ledger\n    address: 10.3.1.1\n    port: 9000\n  - name: broken\n    address: 10.3.1.2\n    port: nope\n');

  const g = await startGantry('registrator', ['--docker=false', '--consul-addr', consulEngine.addr, '--static', join(dir, 'vms'), '--resync', '30s']);
  track('registrator', g);
  await waitUntil('three static services', async () => (await ids()).length === 3, { timeoutMs: 30_000 });
  t.deepEqual(await ids(), ['billing-1', 'billing-2', 'ledger-10.3.1.1-9000']);
  const s = await services();
  t.like(s['billing-1'], { Service: 'billing', Address: '127.0.0.1', Port: hport, Tags: ['vm'] });
  t.like(s['billing-1']!.Meta, { team: 'pay', 'gantry-source': 'static', 'gantry-origin': json });
  // the agent runs the HTTP check
  await waitUntil('billing-1 passing', async () => {
    const c = await consul.request<Array<{ CheckID: string; Status: string; ServiceID: string }>>('GET', '/v1/health/service/billing');
    return (c.body as unknown as Array<{ Service: { ID: string }; Checks: Array<{ Status: string; Type?: string }> }>).some((e) => e.Service.ID === 'billing-1' && e.Checks.length >= 2 && e.Checks.every((x) => x.Status === 'passing'));
  }, { timeoutMs: 20_000 });
  // the invalid entry: file, line and column in the log
  const bad = await waitUntil('problem logged', async () => g.logs().find((l) => String(l.msg).startsWith(`static: ${yaml}:7:11`)));
  t.regex(String(bad.problem), /entry 2, port/);

  // an edit applies (within a second on an idle machine; waited for generously here)
  writeAtomic(json, JSON.stringify({ services: [
    { name: 'billing', id: 'billing-1', address: '127.0.0.1', port: hport, tags: ['vm', 'edited'] },
  ] }));
  await waitUntil('edit applied', async () => { const x = await services(); return x['billing-1']?.Tags.includes('edited') && !x['billing-2']; }, { timeoutMs: 10_000, intervalMs: 50 });
  t.deepEqual(await ids(), ['billing-1', 'ledger-10.3.1.1-9000'], 'the removed entry is deregistered');

  // a partial write (truncated JSON, then an empty file) deregisters nothing
  writeFileSync(json, '{"services": [{"name": "billing", "id": "billing-1", "addr');
  await waitUntil('parse problem logged', async () => g.logs().some((l) => String(l.msg).startsWith(`static: ${json}:1:`) && String(l.problem).includes('does not parse')));
  writeFileSync(json, '');
  await waitUntil('empty file reported', async () => g.logs().some((l) => String(l.msg).startsWith(`static: ${json}:1:1:`) && String(l.problem).startsWith('empty file')));
  t.deepEqual(await ids(), ['billing-1', 'ledger-10.3.1.1-9000'], 'a half-written file keeps what it said before');
  writeFileSync(json, JSON.stringify({ service: { name: 'billing', id: 'billing-3', address: '10.3.0.7', port: 8081 } }));
  await waitUntil('completed write applied', async () => (await ids()).join() === 'billing-3,ledger-10.3.1.1-9000', { timeoutMs: 10_000 });

  // a removed file removes its services
  rmSync(yaml);
  await waitUntil('file removed', async () => (await ids()).join() === 'billing-3', { timeoutMs: 10_000 });
  // Consul may show the removal before the registrator's log line for it is read: wait for that line
  await waitUntil('ledger deregistration logged', async () => g.logs().some((l) => l.action === 'deregister' && String(l.instance) === 'ledger-10.3.1.1-9000'), { timeoutMs: 10_000 });
  const deregs = g.logs().filter((l) => l.action === 'deregister').map((l) => String(l.instance)).sort();
  t.deepEqual(deregs, ['billing-1', 'billing-2', 'ledger-10.3.1.1-9000']);
});
