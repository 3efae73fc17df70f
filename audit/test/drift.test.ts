// Heartbeats, `gantry audit drift` and `--fix-orphans`, `gantry audit log --follow`,
// against a real Consul, Redis, Docker and two real registrators.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createLogger, type ConsulClient } from '@gantry/core';
import { cleanupContainers } from '../../test/harness/engines/docker.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { repoRoot } from '../../test/harness/bins.ts';
import { AuditWriter } from '../src/writer.ts';
import type { DriftReport } from '../src/drift.ts';
import type { HeartbeatValue } from '../src/heartbeat.ts';
import { startAuditStack, type AuditStack } from './stack.ts';

const track = manageEngines(test);
let st: AuditStack;
let runId: string;
let key: string;
let ownerA: string;
let ownerB: string;
let consul: ConsulClient;

function gantry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), ...args], { env: { ...process.env, CONSUL_HTTP_ADDR: st.consulEngine.addr }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 99) : 0, stdout, stderr });
    });
  });
}
const auditFlags = (): string[] => ['--audit-redis', st.redis.url, '--audit-key', key];
async function drift(extra: string[] = []): Promise<{ code: number; report: DriftReport & { fixes?: Array<{ id: string; owner: string; action: string; why: string }> }; stderr: string }> {
  const r = await gantry(['audit', 'drift', '--json', ...auditFlags(), ...extra]);
  if (r.code !== 0 && r.code !== 1) throw new Error(`gantry audit drift exited ${r.code}: ${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as DriftReport, stderr: r.stderr };
}
const ids = (list: Array<{ id: string }>): string[] => list.map((x) => x.id).sort();

async function ownedBy(owner: string): Promise<string[]> {
  const r = await consul.request<Record<string, { ID: string }>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${owner}"` } });
  return Object.keys(r.body ?? {}).sort();
}

test.before(async () => {
  st = await startAuditStack(track);
  ({ runId, key, ownerA, ownerB, consul } = st);
});

test.after.always(async () => {
  if (st) await cleanupContainers(st.docker, runId);
  consul?.close();
});

test.serial('every registrator publishes a heartbeat in Consul: owner, source, version, start, last full pass, counts', async (t) => {
  await st.run('a', 'a1', { SERVICE_NAME: `web-${runId}` });
  await st.run('b', 'b1', { SERVICE_NAME: `api-${runId}` });
  await waitUntil('both registered', async () => (await ownedBy(ownerA)).length === 1 && (await ownedBy(ownerB)).length === 1, { timeoutMs: 30_000 });
  const beat = await waitUntil('heartbeat of A after a full pass with its record', async () => {
    const r = await consul.request<Array<{ Key: string; Value: string; Session?: string }>>('GET', '/v1/kv/gantry/writers/', { query: { recurse: true } });
    const mine = (r.status === 404 ? [] : r.body).map((kv) => ({ kv, v: JSON.parse(Buffer.from(kv.Value, 'base64').toString()) as HeartbeatValue })).find((x) => x.v.owner === ownerA);
    return mine && mine.v.lastFullPass && mine.v.counts.held === 1 ? mine : undefined;
  }, { timeoutMs: 30_000 });
  t.truthy(beat.kv.Session, 'the key is held by a live session');
  t.true(beat.kv.Key.startsWith('gantry/writers/'));
  t.like(beat.v, { owner: ownerA, source: 'docker', version: '0.1.0', ttlMs: 2000 });
  t.false(Number.isNaN(Date.parse(beat.v.startedAt)));
  t.true(beat.v.counts.register >= 1 && beat.v.counts.passes >= 1);

  const d = await drift();
  t.is(d.code, 0, `a clean registry exits 0: ${JSON.stringify(d.report)}`);
  t.true(d.report.clean);
  t.deepEqual(d.report.writers.filter((w) => w.owner === ownerA || w.owner === ownerB).map((w) => [w.owner, w.alive]).sort(), [[ownerA, true], [ownerB, true]]);
});

test.serial('unowned records are listed apart; duplicate address:port and a Host name claimed twice are drift (earliest CreateIndex keeps the name)', async (t) => {
  const reg = (body: object): Promise<unknown> => consul.request('PUT', '/v1/agent/service/register', { body });
  await reg({ ID: `manual-${runId}`, Name: `manual-${runId}`, Address: '127.0.0.9', Port: 7000 });
  await reg({ ID: `dup-1-${runId}`, Name: `dup-one-${runId}`, Address: '127.0.0.9', Port: 7100 });
  await reg({ ID: `dup-2-${runId}`, Name: `dup-two-${runId}`, Address: '127.0.0.9', Port: 7100 });
  await reg({ ID: `host-first-${runId}`, Name: `host-first-${runId}`, Address: '127.0.0.9', Port: 7201, Tags: [`gantry.host=shared-${runId}.example.test`] });
  await reg({ ID: `host-second-${runId}`, Name: `host-second-${runId}`, Address: '127.0.0.9', Port: 7202, Tags: [`gantry.host=Shared-${runId}.example.test`] });

  const d = await waitUntil('drift sees the hand registrations', async () => {
    const r = await drift();
    return r.report.unowned.some((u) => u.id === `host-second-${runId}`) ? r : undefined;
  }, { timeoutMs: 20_000 });
  t.is(d.code, 1, 'duplicates are drift: exit 1');
  t.true(d.report.unowned.some((u) => u.id === `manual-${runId}`), 'the hand-registered service is listed as unowned');
  t.false(d.report.orphans.some((o) => o.id === `manual-${runId}`), '…and never as an orphan');
  const dup = d.report.duplicateAddresses.find((g) => g.address === '127.0.0.9' && g.port === 7100);
  t.deepEqual(dup && ids(dup.records), [`dup-1-${runId}`, `dup-2-${runId}`].sort());
  const name = d.report.duplicateNames.find((n) => n.name === `shared-${runId}.example.test`);
  t.truthy(name, 'the Host name claimed twice is reported');
  t.is(name?.kind, 'host');
  t.is(name?.winner, `host-first-${runId}`, 'the earlier registration keeps the name');
  t.deepEqual(name?.services.map((s) => s.service), [`host-first-${runId}`, `host-second-${runId}`]);

  const text = await gantry(['audit', 'drift', ...auditFlags()]);
  t.is(text.code, 1);
  t.regex(text.stdout, /duplicate address:port \(1\)/);
  t.regex(text.stdout, new RegExp(`host shared-${runId}\\.example\\.test: .*host-first-${runId} keeps it`));
  t.regex(text.stdout, /unowned records/);
  t.regex(text.stdout, /drift: found/);

  // a container whose labels Gantry refuses: reported from the audit stream with the reason
  await st.run('b', 'bad', { SERVICE_NAME: `bad-${runId}`, SERVICE_CHECK_TCP: 'true', SERVICE_CHECK_INTERVAL: 'soon' });
  const refused = await waitUntil('refusal reported', async () => (await drift()).report.refused.find((r) => r.originName === `${runId}-bad`), { timeoutMs: 20_000 });
  t.like(refused, { owner: ownerB, source: 'docker' });
  t.regex(refused.reason, /SERVICE_CHECK_INTERVAL.*invalid duration "soon"/);

  t.is((await gantry(['audit', 'drift', '--no-passing-after', 'soon'])).code, 2, 'a bad flag exits 2');
  t.is((await gantry(['audit', 'nonsense'])).code, 2, 'an unknown subcommand exits 2');
});

test.serial('a registrator SIGKILLed: after its heartbeat TTL its records are orphans; --fix-orphans removes them (audited), the other owner and hand registrations untouched', async (t) => {
  const aRecords = await ownedBy(ownerA);
  const bRecords = await ownedBy(ownerB);
  t.is(aRecords.length, 1);
  await st.regA.kill();

  const d = await waitUntil('A\'s records orphaned', async () => {
    const r = await drift();
    return r.report.orphans.length ? r : undefined;
  }, { timeoutMs: 30_000 });
  t.is(d.code, 1);
  t.deepEqual(ids(d.report.orphans), aRecords, 'exactly A\'s records are orphans');
  const o = d.report.orphans[0]!;
  t.is(o.owner, ownerA);
  t.truthy(o.lastSeen, 'with the owner\'s last heartbeat');
  t.true((o.goneForMs ?? -1) >= 0);
  t.like(o.lastEntry, { action: 'register', instance: aRecords[0], owner: ownerA }, 'and the last audit entry about it');
  t.false(d.report.writers.find((w) => w.owner === ownerA)!.alive);
  t.true(d.report.writers.find((w) => w.owner === ownerB)!.alive);
  const text = await gantry(['audit', 'drift', ...auditFlags()]);
  t.regex(text.stdout, new RegExp(`orphans: records whose owner is gone \\(1\\)\\n.*owner ${ownerA} gone`));

  // dry run by default; the grace period keeps recent orphans
  const dry = await drift(['--fix-orphans', '--orphan-grace', '0s']);
  t.deepEqual(dry.report.fixes?.map((f) => [f.id, f.action]), [[aRecords[0], 'would-remove']]);
  const graced = await drift(['--fix-orphans', '--apply', '--orphan-grace', '1h']);
  t.deepEqual(graced.report.fixes?.map((f) => f.action), ['kept']);
  t.deepEqual(await ownedBy(ownerA), aRecords, 'nothing removed by a dry run or within the grace period');

  const fixed = await drift(['--fix-orphans', '--apply', '--orphan-grace', '0s']);
  t.deepEqual(fixed.report.fixes?.map((f) => [f.id, f.action]), [[aRecords[0], 'removed']]);
  t.deepEqual(await ownedBy(ownerA), [], 'A\'s records are gone from Consul');
  t.deepEqual(await ownedBy(ownerB), bRecords, 'B\'s records are untouched');
  const services = await consul.request<Record<string, unknown>>('GET', '/v1/agent/services');
  t.truthy(services.body[`manual-${runId}`], 'the hand-registered service is not removed');

  const log = await gantry(['audit', 'log', '--json', ...auditFlags()]);
  const removal = log.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>).find((e) => e.reason === 'fix-orphans');
  t.like(removal, { action: 'deregister', instance: aRecords[0], ok: 'true' }, 'the removal is in the audit trail');
  t.regex(removal?.detail ?? '', new RegExp(`orphan of ${ownerA}`));
  const after = await drift();
  t.deepEqual(after.report.orphans, []);
});

test.serial('gantry audit log --follow prints entries appended after it started', async (t) => {
  const child = spawn(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'audit', 'log', '--follow', '--json', '--service', `followed-${runId}`, ...auditFlags()], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const w = new AuditWriter({ url: st.redis.url, key, maxLen: 1000, bufferSize: 100, log: createLogger({ component: 'test', level: 'warn' }) });
  t.teardown(() => w.close(500));
  const entry = (i: number) => ({ time: new Date().toISOString(), owner: 'test', action: 'register', service: `followed-${runId}`, instance: `f-${i}`, source: 'static', origin: 'x', originName: '', image: '', host: 'h', reason: 'event', ok: 'true', error: '', status: '' });
  // keep appending until the follower (which may still be starting) prints one, then two more
  let i = 0;
  await waitUntil('follow prints a new entry', async () => { w.append(entry(i++)); return out.includes('"instance":"f-'); }, { timeoutMs: 30_000, intervalMs: 500 });
  const seen = i;
  w.append(entry(100));
  w.append(entry(101));
  await waitUntil('both later entries', async () => out.includes('"instance":"f-100"') && out.includes('"instance":"f-101"'), { timeoutMs: 15_000 });
  const printed = out.trim().split('\n').map((l) => (JSON.parse(l) as { instance: string }).instance);
  t.is(new Set(printed).size, printed.length, 'no entry printed twice');
  t.true(printed.indexOf('f-100') < printed.indexOf('f-101'), 'in stream order');
  t.true(seen >= 1);
  t.is(child.exitCode, null, 'still following');
});
