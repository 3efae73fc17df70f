// The soak (`node bench/run.ts soak`; never part of a plain `bench/run.ts`):
// the cluster stack of test/harness/cluster-stack.ts for GANTRY_SOAK_MINUTES
// (default 20): a container started or stopped (docker stop -t 5) every second across the three
// hosts (5–40 running), a KV change every second read by ten config clients
// (one process, on the edge agent), HAProxy under a steady wrk load (1 thread,
// 4 connections). Every 10 s, for each Gantry process: RSS and open FDs (from
// /proc), heap and event-loop delay p99 (its /metrics; the config clients'
// process reports its own), Consul requests per minute (a counting proxy in
// front of its agent). Figures: RSS and FD growth between the 5th and the last
// minute (target ≤ 5 %), failed requests through HAProxy (target 0), orphans at
// the end (target 0). The samples are kept in a JSON-lines file named in the notes.
import { readFileSync, readdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startClusterStack, SERVICE, DOMAIN } from '../test/harness/cluster-stack.ts';
import { spawnEngine, tempDir, sleep, waitUntil, type ManagedProcess } from '../test/harness/process.ts';
import { countingProxy, type CountingProxy } from './soak/counting-proxy.ts';
import { summarizeHAProxyLog } from './soak/haproxy-log.ts';
import { result, round, TWO_CORES, type BenchResult } from './lib.ts';

const SUITE = 'soak';
const STOP_TIMEOUT_S = 5;
const here = dirname(fileURLToPath(import.meta.url));

/**
 * One process at one time. RSS is split as the kernel counts it: anonymous memory
 * (V8's heap, malloc) and file-backed pages (the binary, mapped code caches) that
 * come in as code first runs; heap used/total and external memory as V8 reports them.
 */
interface Sample {
  t: number; proc: string; rssMb: number; rssAnonMb: number; rssFileMb: number; fds: number;
  heapMb: number; heapTotalMb: number; externalMb: number; elP99Ms: number; consulPerMin: number;
}

function procStats(pid: number): { rssMb: number; rssAnonMb: number; rssFileMb: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rssMb: mb('VmRSS'), rssAnonMb: mb('RssAnon'), rssFileMb: mb('RssFile') + mb('RssShmem'), fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function scrape(adminUrl: string): Promise<{ heapMb: number; heapTotalMb: number; externalMb: number; elP99Ms: number }> {
  const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  // the registry's default label (component) may follow the name
  const val = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heapMb: val('gantry_nodejs_heap_size_used_bytes') / 2 ** 20, heapTotalMb: val('gantry_nodejs_heap_size_total_bytes') / 2 ** 20,
    externalMb: val('gantry_nodejs_external_memory_bytes') / 2 ** 20, elP99Ms: val('gantry_nodejs_eventloop_lag_p99_seconds') * 1000,
  };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** wrk's totals: requests, non-2xx/3xx answers, socket errors */
function parseWrk(text: string): { requests: number; non2xx: number; socketErrors: number; kinds: string } {
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return { requests, non2xx, socketErrors: se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0, kinds: se ? se[0] : 'Socket errors: none' };
}

export async function run(): Promise<BenchResult[]> {
  const minutes = Number(process.env.GANTRY_SOAK_MINUTES ?? 20);
  if (!(minutes >= 6)) throw new Error('GANTRY_SOAK_MINUTES must be at least 6 (growth is read between the 5th and the last minute)');
  const durationMs = minutes * 60_000;
  const log = (m: string): void => { process.stderr.write(`soak: ${new Date().toISOString()} ${m}\n`); };
  const proxies = new Map<string, CountingProxy>();
  const dir = tempDir('soak');
  const samplesFile = join('/tmp', `gantry-soak-${Date.now()}.jsonl`);
  writeFileSync(samplesFile, '');
  const stack = await startClusterStack({
    partitionable: false,
    consulAddrFor: async (part, agent) => { const p = await countingProxy(agent.httpAddr); proxies.set(part, p); return p.url; },
  });
  let clientsProc: ManagedProcess | undefined;
  let wrk: ManagedProcess | undefined;
  try {
    const server = await stack.cluster.anyServer();
    const kvPut = async (v: number): Promise<void> => {
      const res = await fetch(`${server.httpAddr}/v1/kv/soak/app/counter`, { method: 'PUT', body: String(v), signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`kv put: ${res.status}`);
    };
    await kvPut(0);
    const ccProxy = await countingProxy(stack.edge.httpAddr);
    proxies.set('config-clients', ccProxy);
    const ccLog = join(dir, 'config-clients.log');
    clientsProc = spawnEngine('config-clients', process.execPath, [join(here, 'soak', 'config-clients.ts'), ccProxy.url, 'soak/app/', '10'], { logFile: ccLog });
    const ccReports = (): Array<{ t: number; heapUsed: number; elP99Ms: number; counters: string[] }> =>
      readFileSync(ccLog, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { t: number; heapUsed: number; elP99Ms: number; counters: string[] });
    await waitUntil('config clients started', async () => ccReports().length > 0, { timeoutMs: 60_000, proc: clientsProc });

    for (const h of stack.hosts) for (let i = 0; i < 5; i++) await stack.startContainer(h);
    await stack.waitConverged('soak start');
    log(`stack converged; soaking ${minutes} min`);
    const wrkLog = join(dir, 'wrk.log');
    wrk = spawnEngine('wrk', 'wrk', ['-t1', '-c4', `-d${Math.round(durationMs / 1000)}s`, '--timeout', '5s', '-H', `Host: ${SERVICE}.${DOMAIN}`, `http://127.0.0.1:${stack.haproxy.httpPort}/`], { logFile: wrkLog });
    const t0 = Date.now();
    const end = t0 + durationMs;
    // a stop is `docker stop -t 5` (busybox httpd, PID 1, ignores SIGTERM: SIGKILL after 5 s), as
    // containers are stopped; a SIGKILL without warning is the chaos tests' case
    const churn = stack.churn({ durationMs, intervalMs: 1000, min: 5, max: 40, stopTimeoutS: STOP_TIMEOUT_S });
    let kv = 0;
    const kvLoop = (async () => {
      while (Date.now() < end) {
        const tick = Date.now();
        await kvPut(++kv).catch((err: unknown) => log(`kv put failed: ${String(err)}`));
        await sleep(Math.max(0, 1000 - (Date.now() - tick)));
      }
    })();
    const samples: Sample[] = [];
    const lastCount = new Map<string, { n: number; t: number }>();
    while (Date.now() < end) {
      await sleep(10_000);
      const t = Date.now() - t0;
      const parts = [...stack.hosts.map((h) => h.registrator), stack.templater];
      for (const p of parts) {
        const s = procStats(p.proc.pid);
        const m = await scrape(p.adminUrl).catch(() => ({ heapMb: NaN, heapTotalMb: NaN, externalMb: NaN, elP99Ms: NaN }));
        samples.push({ t, proc: p.name, ...s, ...m, consulPerMin: perMin(p.name, t) });
      }
      const r = ccReports().at(-1);
      samples.push({ t, proc: 'config-clients', ...procStats(clientsProc.pid), heapMb: (r?.heapUsed ?? NaN) / 2 ** 20, heapTotalMb: NaN, externalMb: NaN, elP99Ms: r?.elP99Ms ?? NaN, consulPerMin: perMin('config-clients', t) });
      for (const s of samples.filter((x) => x.t === t)) appendFileSync(samplesFile, `${JSON.stringify(s)}\n`);
      if (Math.round(t / 1000) % 60 < 10) log(`t=${Math.round(t / 1000)}s ${samples.filter((x) => x.t === t).map((x) => `${x.proc} rss=${x.rssMb.toFixed(1)}MB fds=${x.fds} consul/min=${x.consulPerMin.toFixed(0)}`).join('; ')}`);
    }
    function perMin(name: string, t: number): number {
      const n = proxies.get(name)?.count() ?? 0;
      const prev = lastCount.get(name) ?? { n: 0, t: 0 };
      lastCount.set(name, { n, t });
      return ((n - prev.n) / Math.max(1, t - prev.t)) * 60_000;
    }
    const counts = await churn;
    await kvLoop;
    await wrk.exit;
    const w = parseWrk(readFileSync(wrkLog, 'utf8'));
    // HAProxy's side of it: requests that did not end normally, retried, slow; and the templater's reloads
    const hl = await summarizeHAProxyLog(join(stack.haproxy.dir, 'haproxy.log'));
    const reloads = await stack.templater.metric('gantry_templater_reloads_total').catch(() => NaN);
    const reloadLines = stack.templater.logs().filter((l) => l.reloaded === true).map((l) => `${String(l.time)} templater reloaded HAProxy`);
    const haproxyNotes = `HAProxy log: ${hl.requests} requests, abnormal ends ${JSON.stringify(hl.abnormal)}, ${hl.retried} retried, ${hl.slow} over 1 s; the templater reloaded HAProxy ${reloads} times`;
    writeFileSync(samplesFile.replace(/\.jsonl$/, '.haproxy.txt'), [haproxyNotes, readFileSync(wrkLog, 'utf8'), ...reloadLines, ...hl.examples, ''].join('\n'));
    // the last KV value reached every config client
    await sleep(11_000);
    const lastReport = ccReports().at(-1);
    const clientsBehind = (lastReport?.counters ?? []).filter((c) => c !== String(kv)).length;
    let orphans = -1;
    let missing = -1;
    try {
      await stack.waitConverged('soak end', { timeoutMs: 120_000 });
      orphans = 0;
      missing = 0;
    } catch {
      const d = await stack.catalogDiff();
      orphans = d.orphans.length;
      missing = d.missing.length;
    }

    const out: BenchResult[] = [];
    const notes = `${TWO_CORES}; ${minutes} min; churn ${counts.started} starts/${counts.stopped} stops (docker stop -t ${STOP_TIMEOUT_S}; 1/s, 5–40 running, 3 hosts); ${kv} KV changes read by 10 config clients; wrk -t1 -c4; samples in ${samplesFile}`;
    const windowOf = (proc: string, fromMin: number, toMin: number): Sample[] => samples.filter((s) => s.proc === proc && s.t > fromMin * 60_000 && s.t <= toMin * 60_000);
    let worstRss = -Infinity;
    let worstFd = -Infinity;
    for (const proc of [...new Set(samples.map((s) => s.proc))]) {
      const a = windowOf(proc, 4, 5);
      const b = windowOf(proc, minutes - 1, minutes);
      const rssGrowth = (mean(b.map((s) => s.rssMb)) / mean(a.map((s) => s.rssMb)) - 1) * 100;
      const fdGrowth = (mean(b.map((s) => s.fds)) / mean(a.map((s) => s.fds)) - 1) * 100;
      worstRss = Math.max(worstRss, rssGrowth);
      worstFd = Math.max(worstFd, fdGrowth);
      const all = samples.filter((s) => s.proc === proc);
      const floor = (xs: Sample[]): string => Math.min(...xs.map((s) => s.heapMb)).toFixed(1);
      const mb = (xs: Sample[], k: 'rssMb' | 'rssAnonMb' | 'rssFileMb' | 'heapTotalMb' | 'externalMb'): string => mean(xs.map((s) => s[k])).toFixed(1);
      const d = `minute 5 → last: rss ${mb(a, 'rssMb')} → ${mb(b, 'rssMb')} MB (anonymous ${mb(a, 'rssAnonMb')} → ${mb(b, 'rssAnonMb')}, file-backed ${mb(a, 'rssFileMb')} → ${mb(b, 'rssFileMb')}), fds ${mean(a.map((s) => s.fds)).toFixed(1)} → ${mean(b.map((s) => s.fds)).toFixed(1)}, heap used ${mean(a.map((s) => s.heapMb)).toFixed(1)} → ${mean(b.map((s) => s.heapMb)).toFixed(1)} MB of ${mb(a, 'heapTotalMb')} → ${mb(b, 'heapTotalMb')} (lowest ${floor(a)} → ${floor(b)}: a leak raises the low points after collections), external ${mb(a, 'externalMb')} → ${mb(b, 'externalMb')} MB`;
      out.push(result({ suite: SUITE, metric: `soak_rss_growth_pct.${proc}`, value: rssGrowth, unit: '%', n: a.length + b.length, baseline_metric: null, baseline_value: null, notes: `${d}; no baseline (growth of the process itself)` }));
      out.push(result({ suite: SUITE, metric: `soak_fd_growth_pct.${proc}`, value: fdGrowth, unit: '%', n: a.length + b.length, baseline_metric: null, baseline_value: null, notes: d }));
      out.push(result({ suite: SUITE, metric: `soak_consul_requests_per_min.${proc}`, value: mean(all.map((s) => s.consulPerMin)), unit: 'req/min', n: all.length, baseline_metric: null, baseline_value: null, notes: `counted by a proxy in front of its agent; max ${Math.max(...all.map((s) => s.consulPerMin)).toFixed(0)}` }));
      out.push(result({ suite: SUITE, metric: `soak_event_loop_p99_ms.${proc}`, value: Math.max(...all.map((s) => s.elP99Ms).filter(Number.isFinite)), unit: 'ms', n: all.length, baseline_metric: null, baseline_value: null, notes: `worst 10 s sample; mean ${round(mean(all.map((s) => s.elP99Ms).filter(Number.isFinite)), 2)} ms` }));
    }
    out.push(result({ suite: SUITE, metric: 'soak_rss_growth_pct', value: worstRss, unit: '%', n: samples.length, baseline_metric: null, baseline_value: null, notes: `target ≤ 5; the worst Gantry process; ${notes}` }));
    out.push(result({ suite: SUITE, metric: 'soak_fd_growth_pct', value: worstFd, unit: '%', n: samples.length, baseline_metric: null, baseline_value: null, notes: `target ≤ 5; the worst Gantry process; ${notes}` }));
    out.push(result({ suite: SUITE, metric: 'soak_failed_requests', value: w.non2xx + w.socketErrors, unit: 'count', n: w.requests, baseline_metric: null, baseline_value: null, notes: `target 0; non-2xx ${w.non2xx}, socket errors ${w.socketErrors} (wrk: ${w.kinds}) of ${w.requests} requests through HAProxy; ${haproxyNotes} (examples in ${samplesFile.replace(/\.jsonl$/, '.haproxy.txt')})` }));
    out.push(result({ suite: SUITE, metric: 'soak_orphans', value: orphans, unit: 'count', n: counts.started, baseline_metric: null, baseline_value: null, notes: `target 0; missing at the end: ${missing}; config clients not at the last KV value 11 s after it: ${clientsBehind}/10` }));
    return out;
  } finally {
    await wrk?.stop();
    await clientsProc?.stop();
    await stack.stop();
    for (const p of proxies.values()) await p.close();
  }
}
