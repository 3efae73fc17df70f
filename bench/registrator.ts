// `npm run bench -- registrator`: container start → registered and kill →
// deregistered (p50/p99 over 200), cold start with 300 running containers, and
// the registrator's RSS. Baselines in the same run, measured the same way (from
// outside, a blocking catalog query on the one service, /v1/catalog/service/<name>;
// each right after a container's): a direct agent register call, a direct
// deregister call, the same 300 registrations made by direct calls. RSS has no
// honest baseline (baseline_metric null). A second, shorter run at debug level
// (up to 100 starts, then as many kills, in the same order) splits both figures
// into their shares, sample by sample (stderr, from the registrator's debug log:
// a diagnosis, not a figure).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul } from '../test/harness/engines/consul.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId } from '../test/harness/engines/docker.ts';
import { startGantry, type GantryProcess } from '../test/harness/gantry.ts';
import { tempDir, removeDir } from '../test/harness/process.ts';
import { result, percentile, nowMs, round, TWO_CORES, type BenchResult } from './lib.ts';

const N = Number(process.env.BENCH_REGISTRATOR_N ?? 200);
const COLD = Number(process.env.BENCH_REGISTRATOR_COLD ?? 300);

/**
 * Resolves (with nowMs()) once the catalog's view of the agent's node satisfies `pred`: a
 * blocking query, as any Consul reader (the templater, consul-template) would watch it.
 * The agent's own /v1/agent/services cannot block, and polling it in a loop would take
 * CPU from the registrator and Consul on this 2-core machine.
 */
async function until(consul: ConsulClient, owner: string, pred: (names: Set<string>) => boolean, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  node ??= (await consul.request<{ Config: { NodeName: string } }>('GET', '/v1/agent/self')).body.Config.NodeName;
  let index: string | undefined;
  for (;;) {
    const r = await consul.request<{ Services?: Array<{ Service: string }> } | null>('GET', `/v1/catalog/node-services/${encodeURIComponent(node)}`, {
      query: { filter: `Meta["gantry-owner"] == "${owner}"` }, index, wait: index ? '5s' : undefined, timeoutMs: 10_000,
    });
    if (pred(new Set((r.body?.Services ?? []).map((s) => s.Service)))) return nowMs();
    if (Date.now() > deadline) throw new Error('bench: timed out waiting for Consul');
    index = r.index;
  }
}
let node: string | undefined;

/**
 * Resolves (with nowMs()) once the catalog holds `name` of `owner` (present) or no longer
 * does: a blocking query on that one service, whose answer is an instance or none however
 * many services the node holds. (Watching the whole node's listing, as `until` does, made
 * the observer's own read grow with the number of services and with their records' size:
 * at 500 containers it took more of the figure than the registrator.)
 */
async function untilService(consul: ConsulClient, owner: string, name: string, present: boolean, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let index: string | undefined;
  for (;;) {
    const r = await consul.request<Array<{ ServiceName: string }> | null>('GET', `/v1/catalog/service/${encodeURIComponent(name)}`, {
      query: { filter: `ServiceMeta["gantry-owner"] == "${owner}"` }, index, wait: index ? '5s' : undefined, timeoutMs: 10_000,
    });
    if ((r.body ?? []).length > 0 === present) return nowMs();
    if (Date.now() > deadline) throw new Error('bench: timed out waiting for Consul');
    index = r.index;
  }
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Where start → registered and kill → deregistered go, from a run at debug level (stderr,
 * one JSON line each), sample by sample: the container's event as it arrived (before the
 * outside clock starts when negative: dockerd sends `start` and `die` before its API call
 * returns), arrival → pass start (a pass already under way), the pass's snapshot (the
 * inspect; none for a `die`) and apply (the agent call), and the agent call answered → the
 * catalog's blocking query answered. Log times have ms resolution; each share's p50/p99
 * is over its own samples, so the shares do not add up to the total's percentiles.
 */
async function breakdown(docker: Docker, consul: ConsulClient, env: NodeJS.ProcessEnv, n: number): Promise<void> {
  const id = newRunId();
  const owner = `bench-${id}`;
  const g = await startGantry('registrator', ['--owner', owner, '--require-label', `gantry.test=${id}`, '--resync', '60s', '--log-level', 'debug'], { env });
  try {
    interface Sample { container: string; service: string; t0: number; visible: number }
    const ups: Sample[] = [];
    const downs: Sample[] = [];
    // the same order as the figures' run: n starts (up to n containers running), then n kills
    const started: Docker.Container[] = [];
    for (let i = 0; i < n; i++) {
      const c = await runContainer(docker, { runId: id, name: `${id}-b${i}`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: `b-${i}` }, labels: { 'gantry.test': id }, start: false });
      await c.start();
      const t0 = Date.now();
      const p0 = nowMs();
      const p1 = await untilService(consul, owner, `b-${i}`, true);
      ups.push({ container: c.id.slice(0, 12), service: `b-${i}`, t0, visible: t0 + (p1 - p0) });
      started.push(c);
    }
    for (let i = 0; i < n; i++) {
      await started[i]!.kill();
      const t0 = Date.now();
      const p0 = nowMs();
      const p1 = await untilService(consul, owner, `b-${i}`, false);
      downs.push({ container: started[i]!.id.slice(0, 12), service: `b-${i}`, t0, visible: t0 + (p1 - p0) });
    }
    const logs = g.logs().map((l): Record<string, unknown> & { at: number } => ({ ...l, at: Date.parse(String(l.time)) }));
    const shares = (samples: Sample[], event: string, action: string): Record<string, number> => {
      const cols: Record<string, number[]> = { total: [], event_after_t0: [], arrival_to_pass: [], snapshot_inspect: [], agent_call: [], applied_to_visible: [] };
      for (const smp of samples) {
        const ev = logs.find((l) => l.msg === 'docker event' && l.event === event && l.container === smp.container);
        const k = logs.findIndex((l) => l.action === action && l.service === smp.service && (l.msg === `${action} ${smp.service}`));
        const done = logs[k];
        const pass = logs.slice(k).find((l) => l.msg === 'pass timing');
        cols.total!.push(smp.visible - smp.t0);
        if (!ev || !done || !pass || typeof pass.snapshotMs !== 'number' || typeof pass.applyMs !== 'number') continue;
        cols.event_after_t0!.push(ev.at - smp.t0);
        cols.arrival_to_pass!.push(pass.at - pass.snapshotMs - pass.applyMs - ev.at);
        cols.snapshot_inspect!.push(pass.snapshotMs);
        cols.agent_call!.push(pass.applyMs);
        cols.applied_to_visible!.push(smp.visible - done.at);
      }
      const out: Record<string, number> = { n: cols.snapshot_inspect!.length };
      for (const [k, v] of Object.entries(cols)) { out[`${k}_p50`] = round(percentile(v, 50), 1); out[`${k}_p99`] = round(percentile(v, 99), 1); }
      return out;
    };
    process.stderr.write(`${JSON.stringify({ breakdown: 'start_to_registered', ...shares(ups, 'start', 'register') })}\n`);
    process.stderr.write(`${JSON.stringify({ breakdown: 'kill_to_deregistered', ...shares(downs, 'kill', 'deregister') })}\n`);
  } finally {
    await g.stop();
    await cleanupContainers(docker, id);
  }
}

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const docker: Docker = await ensureDocker();
  const runId = newRunId();
  const owner = `bench-${runId}`;
  const consulEngine = await startConsul();
  const consul = createConsul({ addr: consulEngine.addr });
  let reg: GantryProcess | undefined;
  const cacheDir = tempDir('bench-compile-cache');
  try {
    // baseline: a direct register call, until Consul shows it; measured interleaved with the
    // figures below (one right after each container's), with the registrator running and as many
    // containers up: the same Consul, the same load, the same moment
    const direct: number[] = [];
    const directDown: number[] = [];
    const directUp = async (i: number): Promise<void> => {
      const t0 = nowMs();
      await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `direct-${i}`, Name: `direct-${i}`, Port: 1000 + i, Meta: { 'gantry-owner': `${owner}-direct` } } });
      direct.push((await untilService(consul, `${owner}-direct`, `direct-${i}`, true)) - t0);
    };
    const directGone = async (i: number): Promise<void> => {
      const t0 = nowMs();
      await consul.request('PUT', `/v1/agent/service/deregister/direct-${i}`);
      directDown.push((await untilService(consul, `${owner}-direct`, `direct-${i}`, false)) - t0);
    };
    // info level: each applied change is logged after Consul answered, which splits the figure into
    // the registrator's part (start → its register call answered) and the rest (Consul → the watcher)
    // RSS with no containers, in a throwaway compile cache: first a start that fills it (as the
    // first start on a new host does), then one that uses it (every later start); the figures
    // below run with the second kind
    const idleRss = async (): Promise<number> => {
      const g = await startGantry('registrator', ['--owner', `${owner}-idle`, '--require-label', `gantry.test=${runId}-none`, '--log-level', 'warn'], { env: { CONSUL_HTTP_ADDR: consulEngine.addr, NODE_COMPILE_CACHE: cacheDir } });
      // every module a running registrator loads is loaded once its first pass is done
      const metrics = async (): Promise<string> => (await fetch(`${g.adminUrl}/metrics`)).text();
      for (let i = 0; i < 100 && !/gantry_registrator_reconcile_passes_total\{[^}]*\} [1-9]/.test(await metrics()); i++) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 3000));
      const mb = rssMb(g.proc.pid);
      await g.stop(); // a clean exit writes the cache
      return mb;
    };
    const rssFirstStart = await idleRss();
    const rssIdle = await idleRss();
    out.push(result({ suite: 'registrator', metric: 'rss_no_containers_compile_cache_warm', value: rssIdle, unit: 'MB', n: 0, baseline_metric: null, baseline_value: null, notes: 'VmRSS 3 s after the first reconcile pass, compile cache warm (every start after the first on a host); no honest baseline (gliderlabs/registrator cannot be built here)' }));
    out.push(result({ suite: 'registrator', metric: 'rss_no_containers_first_start', value: rssFirstStart, unit: 'MB', n: 0, baseline_metric: null, baseline_value: null, notes: 'the same, on the first start on a host: it loads the type stripper and fills the compile cache (cli/bin/gantry.js); no honest baseline' }));
    const env = { CONSUL_HTTP_ADDR: consulEngine.addr, NODE_COMPILE_CACHE: cacheDir };
    reg = await startGantry('registrator', ['--owner', owner, '--require-label', `gantry.test=${runId}`, '--resync', '60s', '--log-level', 'info'], { env });

    const up: number[] = [];
    const down: number[] = [];
    const startedAt: number[] = [];
    const killedAt: number[] = [];
    const containers: Docker.Container[] = [];
    for (let i = 0; i < N; i++) {
      const c = await runContainer(docker, { runId, name: `${runId}-s${i}`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: `svc-${i}` }, labels: { 'gantry.test': runId }, start: false });
      await c.start(); // resolves once the engine reports the container running
      const t0 = nowMs();
      startedAt.push(Date.now());
      up.push((await untilService(consul, owner, `svc-${i}`, true)) - t0);
      containers.push(c);
      await directUp(i);
    }
    for (let i = 0; i < N; i++) {
      await containers[i]!.kill(); // resolves once the container is dead
      const t0 = nowMs();
      killedAt.push(Date.now());
      down.push((await untilService(consul, owner, `svc-${i}`, false)) - t0);
      await directGone(i);
    }
    // where the tail is: the slowest samples with their place in the run (a cold first one shows as #0)
    const slowest = (xs: number[]): string => xs.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 4).map(([v, i]) => `#${i} ${v.toFixed(1)}`).join(', ');
    process.stderr.write(`bench registrator: slowest (ms, #sample): start ${slowest(up)}; direct register ${slowest(direct)}; kill ${slowest(down)}; direct deregister ${slowest(directDown)}\n`);
    const d50 = percentile(direct, 50);
    const d99 = percentile(direct, 99);
    const dd50 = percentile(directDown, 50);
    const dd99 = percentile(directDown, 99);
    const note = `${TWO_CORES}; from docker start()/kill() resolving (container running / dead) to the change visible in the catalog (a blocking query on that one service, /v1/catalog/service/<name> filtered by owner; the same query for the direct calls)`;
    out.push(result({ suite: 'registrator', metric: 'start_to_registered_p50', value: percentile(up, 50), unit: 'ms', n: N, baseline_metric: 'direct_register_p50', baseline_value: d50, notes: note }));
    out.push(result({ suite: 'registrator', metric: 'start_to_registered_p99', value: percentile(up, 99), unit: 'ms', n: N, baseline_metric: 'direct_register_p99', baseline_value: d99, notes: `${note}; target p99 <= 1.3 x the baseline (issue 15)` }));
    out.push(result({ suite: 'registrator', metric: 'stop_to_deregistered_p50', value: percentile(down, 50), unit: 'ms', n: N, baseline_metric: 'direct_deregister_p50', baseline_value: dd50, notes: note }));
    out.push(result({ suite: 'registrator', metric: 'stop_to_deregistered_p99', value: percentile(down, 99), unit: 'ms', n: N, baseline_metric: 'direct_deregister_p99', baseline_value: dd99, notes: `${note}; target p99 <= 1.3 x the baseline (issue 15)` }));
    await reg.stop();
    reg = undefined;
    await cleanupContainers(docker, runId);
    await breakdown(docker, consul, env, Math.min(N, 100));

    // cold start: COLD running containers, then the registrator starts (BENCH_REGISTRATOR_COLD=0: left out)
    if (COLD <= 0) return out;
    const cold = newRunId();
    for (let i = 0; i < COLD; i += 10) {
      await Promise.all(Array.from({ length: Math.min(10, COLD - i) }, (_, k) => runContainer(docker, { runId: cold, name: `${cold}-c${i + k}`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: `cold-${i + k}` }, labels: { 'gantry.test': cold } })));
    }
    const coldOwner = `bench-${cold}`;
    // baseline: registering the same number of services with direct calls (16 at a time)
    const tb = nowMs();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < COLD) { const i = next++; await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `b-${i}`, Name: `b-${i}`, Port: 1, Meta: { 'gantry-owner': `${coldOwner}-direct` } } }); }
    }));
    const baselineCold = nowMs() - tb;
    const t0 = nowMs();
    reg = await startGantry('registrator', ['--owner', coldOwner, '--require-label', `gantry.test=${cold}`, '--resync', '60s', '--log-level', 'warn'], { env, waitHealthy: false });
    const tDone = await until(consul, coldOwner, (s) => s.size === COLD, 60_000);
    out.push(result({ suite: 'registrator', metric: 'cold_start_until_consul_matches', value: tDone - t0, unit: 'ms', n: COLD, baseline_metric: 'direct_register_all_16_parallel', baseline_value: baselineCold, notes: `${TWO_CORES}; includes node start of the registrator process; target <= 3000 ms` }));
    await new Promise((r) => setTimeout(r, 1000));
    out.push(result({ suite: 'registrator', metric: 'rss_with_containers', value: rssMb(reg.proc.pid), unit: 'MB', n: COLD, baseline_metric: null, baseline_value: null, notes: `VmRSS of the registrator process after convergence, compile cache warm (${round(rssIdle, 1)} MB with none); no honest baseline; target <= 120 MB` }));
    await cleanupContainers(docker, cold);
  } finally {
    await reg?.stop();
    await cleanupContainers(docker, runId);
    consul.close();
    await consulEngine.stop();
    removeDir(cacheDir);
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const r of await run()) process.stdout.write(`${JSON.stringify(r)}\n`);
}
