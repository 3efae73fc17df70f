// `npm run bench -- audit`: 10,000 instances from 20 owners (15 alive, 5 gone,
// with heartbeats and 20,000 audit entries), then
// - `gantry audit drift --json` wall time as a child process, next to a child
//   process that only reads the same catalog and health from Consul (same
//   requests, same run);
// - the registry page's first render in headless Chromium (navigation start →
//   load event, the table's first page drawn), next to the same page with an
//   empty registry served by the same binary in the same run.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startRedis } from '../test/harness/engines/redis.ts';
import { spawnEngine, tempDir, freePort, waitUntil, type ManagedProcess } from '../test/harness/process.ts';
import { repoRoot } from '../test/harness/bins.ts';
import { launchChromium } from '../test/harness/chromium.ts';
import { result, percentile, nowMs, type BenchResult } from './lib.ts';

const INSTANCES = Number(process.env.BENCH_AUDIT_INSTANCES ?? 10_000);
const OWNERS = 20;
const GONE = 5;
const RUNS = Number(process.env.BENCH_AUDIT_RUNS ?? 5);
const LOAD = 'machine: 2 cores shared with other engineers\' builds and tests; Consul, Redis, the CLI and Chromium on the same cores';

function child(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; code: number; out: string }> {
  const t0 = nowMs();
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: { ...process.env, ...env }, maxBuffer: 256 << 20 }, (err, stdout) => {
      resolve({ ms: nowMs() - t0, code: err ? (typeof err.code === 'number' ? err.code : 99) : 0, out: stdout });
    });
  });
}

export async function populate(consul: ConsulClient, redisUrl: string, key: string): Promise<void> {
  const per = Math.ceil(INSTANCES / OWNERS);
  for (let o = 0; o < OWNERS; o++) {
    const owner = `bench-owner-${o}`;
    const node = `bench-node-${o}`;
    await consul.request('PUT', '/v1/catalog/register', { body: { Node: node, Address: `10.2.${o}.1` } });
    for (let i = 0; i < per; i += 64) {
      const ops = [];
      for (let j = i; j < Math.min(per, i + 64); j++) {
        const id = `o${o}-i${j}`;
        ops.push({ Service: { Verb: 'set', Node: node, Service: { ID: id, Service: `svc-${j % 200}`, Address: `10.2.${o}.${(j % 250) + 2}`, Port: 8000 + Math.floor(j / 250), Tags: ['bench', `gantry.host=svc-${j % 200}.bench.test`], Meta: { 'gantry-owner': owner, 'gantry-source': 'static', 'gantry-origin': `bench.yaml#${id}` } } } });
        ops.push({ Check: { Verb: 'set', Check: { Node: node, CheckID: `c-${id}`, Name: 'bench', Status: j % 97 === 0 ? 'critical' : 'passing', ServiceID: id } } });
      }
      await consul.request('PUT', '/v1/txn', { body: ops, timeoutMs: 30_000 });
    }
    // heartbeats: alive ones held by a session, gone ones released
    const now = new Date().toISOString();
    const value = JSON.stringify({ owner, instance: `bench-${o}`, source: 'static', version: 'bench', host: node, pid: 1, startedAt: now, heartbeatAt: now, ttlMs: 60_000, lastFullPass: { at: now, ms: 10, reason: 'start', planned: 0, failed: 0 }, counts: { held: per, passes: 1, register: per, update: 0, status: 0, deregister: 0, errors: 0 } });
    const k = `gantry/writers/${owner}/bench-${o}`;
    if (o < OWNERS - GONE) {
      const s = await consul.request<{ ID: string }>('PUT', '/v1/session/create', { body: { Name: 'bench', TTL: '3600s', Behavior: 'release' } });
      await consul.request('PUT', `/v1/kv/${k}`, { query: { acquire: s.body.ID }, body: value });
    } else {
      await consul.request('PUT', `/v1/kv/${k}`, { body: value });
    }
  }
  // the audit stream: a register entry per instance and as many status changes
  const redis = new Redis(redisUrl);
  try {
    for (let o = 0; o < OWNERS; o++) {
      const pipe = redis.pipeline();
      for (let j = 0; j < per; j++) {
        for (const action of ['register', 'status']) {
          pipe.xadd(key, '*', 'time', new Date().toISOString(), 'owner', `bench-owner-${o}`, 'action', action, 'service', `svc-${j % 200}`, 'instance', `o${o}-i${j}`,
            'source', 'static', 'origin', `bench.yaml#o${o}-i${j}`, 'originName', '', 'image', '', 'host', `bench-node-${o}`, 'reason', 'start', 'ok', 'true', 'error', '', 'status', action === 'status' ? 'passing' : '');
        }
      }
      await pipe.exec();
    }
  } finally {
    redis.disconnect();
  }
}

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const [consulEngine, redis] = await Promise.all([startConsul(), startRedis()]);
  const consul = createConsul({ addr: consulEngine.addr });
  const key = 'gantry:audit:bench';
  const procs: ManagedProcess[] = [];
  const browser = await launchChromium();
  const env = { CONSUL_HTTP_ADDR: consulEngine.addr };
  const gantry = join(repoRoot, 'cli/bin/gantry.js');
  const serve = async (auditKey: string): Promise<string> => {
    const port = await freePort();
    const dir = tempDir('bench-audit-page');
    const p = spawnEngine('gantry audit serve', process.execPath, [gantry, 'audit', 'serve', '--addr', `127.0.0.1:${port}`, '--refresh', '60s', '--audit-redis', redis.url, '--audit-key', auditKey], { logFile: join(dir, 'serve.log'), env: { ...process.env, ...env } });
    procs.push(p);
    const url = `http://127.0.0.1:${port}`;
    await waitUntil('page read the registry', async () => (await fetch(`${url}/healthz`)).ok, { proc: p, timeoutMs: 60_000 });
    return url;
  };
  /** navigation start → load event in Chromium, the first page of rows drawn (p50 of RUNS fresh pages) */
  const firstRender = async (url: string): Promise<{ p50: number; rows: number }> => {
    const samples: number[] = [];
    let rows = 0;
    for (let i = 0; i < RUNS + 1; i++) {
      const page = await browser.newPage();
      await page.goto(`${url}/`, { waitUntil: 'load' });
      rows = await page.locator('#instances tbody tr').count();
      const ms = await page.evaluate<number>('(() => { const n = performance.getEntriesByType("navigation")[0]; return n.loadEventEnd - n.startTime; })()');
      if (i > 0) samples.push(ms); // the first warms Chromium's own caches
      await page.close();
    }
    return { p50: percentile(samples, 50), rows };
  };
  try {
    // the page over an empty registry first: the baseline
    const emptyUrl = await serve('gantry:audit:empty');
    const empty = await firstRender(emptyUrl);

    await populate(consul, redis.url, key);

    // baseline: a process that reads the same catalog and health (same requests) and exits
    const readOnly = `import { fetchCatalog } from ${JSON.stringify(join(repoRoot, 'audit/src/catalog.ts'))}; import { createConsul } from '@gantry/core';
const c = createConsul({ addr: process.env.CONSUL_HTTP_ADDR }); const r = await fetchCatalog(c); c.close(); console.log(r.services.reduce((n, s) => n + (s.Services?.length ?? 0), 0));`;
    const base: number[] = [];
    const drift: number[] = [];
    let counted = 0;
    let instances = 0;
    for (let i = 0; i < RUNS + 1; i++) {
      const b = await child(['--input-type=module', '-e', readOnly], { ...env });
      const d = await child([gantry, 'audit', 'drift', '--json', '--audit-redis', redis.url, '--audit-key', key], env);
      if (d.code !== 1) throw new Error(`bench: drift exited ${d.code} (expected 1: 5 owners are gone)`);
      const report = JSON.parse(d.out) as { orphans: unknown[]; counts: { instances: number; auditEntries: number } };
      counted = report.orphans.length;
      instances = report.counts.instances;
      if (i > 0) { base.push(b.ms); drift.push(d.ms); }
    }
    out.push(result({
      suite: 'audit', metric: 'drift_cli_ms_p50', value: percentile(drift, 50), unit: 'ms', n: drift.length,
      baseline_metric: 'consul_catalog_health_read_process_ms_p50', baseline_value: percentile(base, 50),
      notes: `gantry audit drift --json as a child process (node start, catalog + health + heartbeats + ${2 * instances} audit entries from Redis, drift, JSON) over ${instances} instances from ${OWNERS} owners (${GONE} gone → ${counted} orphans); baseline: a node process doing the same Consul requests only; ${LOAD}`,
    }));

    const fullUrl = await serve(key);
    const full = await firstRender(fullUrl);
    out.push(result({
      suite: 'audit', metric: 'page_first_render_ms_p50', value: full.p50, unit: 'ms', n: RUNS,
      baseline_metric: 'page_first_render_ms_p50_empty_registry', baseline_value: empty.p50,
      notes: `headless Chromium, navigation start → load event, ${instances} instances (first page: ${full.rows} rows drawn), server-rendered paged table + drift + timeline; baseline: the same page over an empty registry, same binary, same run; ${LOAD}`,
    }));
  } finally {
    await browser.close();
    await Promise.allSettled(procs.map((p) => p.stop()));
    consul.close();
    await Promise.allSettled([consulEngine.stop(), redis.stop()]);
  }
  return out;
}
