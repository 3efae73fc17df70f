// `npm run bench -- gateway`: the gateway against HAProxy, node http-proxy and
// the upstream direct, all in one run with the same upstream and the same wrk:
//   1. requests/s and p99 through each (wrk -t1: the load generator takes one of the 2 cores);
//      CPU per request, also next to a bare Node socket relay (bench/gateway/node-relay.ts), the floor
//   2. a 50,000-route table: build+swap time of a change (one service, 1,000, a KV policy) and of
//      the first table, RSS (a child process, RSS read from /proc)
//   3. a KV canary weight change → applied in the live table (/routes), p99; baseline:
//      the same change seen by a blocking query on the KV key (Consul's own wake-up)
//   4. 100 % mirroring to a slow mirror: primary requests/s vs mirroring off
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { result, percentile, nowMs, TWO_CORES, type BenchResult } from './lib.ts';
import { startConsul, type ConsulEngine } from '../test/harness/engines/consul.ts';
import { startHAProxy, answeringConfig, globalSection, type HAProxyEngine } from '../test/harness/engines/haproxy.ts';
import { startGantry, GATEWAY_NODE_FLAGS, type GantryProcess } from '../test/harness/gantry.ts';
import { spawnEngine, freePort, waitUntil, sleep, tcpReady } from '../test/harness/process.ts';
import { repoRoot } from '../test/harness/bins.ts';

const SECONDS = Number(process.env.GANTRY_BENCH_SECONDS ?? 10);
const CONNECTIONS = 50;
const WRK = `wrk -t1 -c${CONNECTIONS} -d${SECONDS}s --latency (one thread; the cores it took are measured)`;

interface Wrk {
  rps: number; p99ms: number; requests: number; errors: number;
  /** CPU the wrk process took, in cores (its CPU time over the run's wall time) */
  wrkCores: number;
  /** CPU (user + sys) the measured pids took per request, µs */
  cpuUsPerRequest: number;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** user + sys CPU of a process so far, ms (NaN once it is gone) */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch { return NaN; }
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

/** wrk against port; `pids`: the proxy's processes, whose CPU per request is measured over the run */
function wrk(port: number, host: string, pids: readonly number[], seconds = SECONDS): Promise<Wrk> {
  return new Promise((resolve, reject) => {
    const before = pids.map(cpuMs);
    const t0 = performance.now();
    const child = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, `http://127.0.0.1:${port}/`]);
    // wrk's own CPU: its /proc entry is gone once it exits, so the last reading before that
    let wrkCpu = 0;
    const poll = setInterval(() => { const v = cpuMs(child.pid!); if (v >= 0) wrkCpu = v; }, 100);
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('close', () => {
      clearInterval(poll);
      const wallMs = performance.now() - t0;
      const used = pids.reduce((a, pid, i) => a + cpuMs(pid) - before[i]!, 0);
      const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      resolve({
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
        p99ms: toMs(/\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? ''),
        requests,
        errors: non2xx + (se ? se.slice(1, 5).map(Number).reduce((a, b) => a + b, 0) : 0),
        wrkCores: wrkCpu / wallMs,
        cpuUsPerRequest: (used * 1000) / requests,
      });
    });
  });
}

async function warm(port: number, host: string): Promise<void> {
  await wrk(port, host, [], 2);
}

const put = async (addr: string, path: string, body: unknown): Promise<void> => {
  const res = await fetch(`${addr}${path}`, { method: 'PUT', body: typeof body === 'string' ? body : JSON.stringify(body) });
  if (!res.ok) throw new Error(`PUT ${path}: ${res.status}`);
};

async function gateway(consul: ConsulEngine, extra: string[]): Promise<GantryProcess & { port: number }> {
  const port = await freePort();
  const g = await startGantry('gateway', ['--consul-addr', consul.addr, '--listen', `127.0.0.1:${port}`, '--consul-min-spacing', '5ms', '--log-level', 'warn', ...extra]);
  return Object.assign(g, { port });
}

async function routeReady(adminUrl: string, host: string, want: (t: string) => boolean): Promise<void> {
  await waitUntil(`route ${host}`, async () => {
    const text = await (await fetch(`${adminUrl}/routes`)).text();
    return text.includes(`"host":"${host}"`) && want(text);
  }, { timeoutMs: 30_000, intervalMs: 20 });
}

async function throughput(consul: ConsulEngine, upstream: HAProxyEngine): Promise<BenchResult[]> {
  const upstreamPort = upstream.httpPort;
  const haproxy = await startHAProxy({
    config: (p) => `${globalSection(p.dir)}
    nbthread 1

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive

frontend fe
    bind 127.0.0.1:${p.httpPort}
    default_backend be

backend be
    http-reuse always
    server up 127.0.0.1:${upstreamPort} maxconn 500
`,
  });
  const hpPort = await freePort();
  const hp = spawnEngine('http-proxy', process.execPath, [join(repoRoot, 'bench', 'gateway', 'http-proxy.ts'), String(hpPort), String(upstreamPort)], { logFile: join(haproxy.dir, 'http-proxy.log') });
  await waitUntil('http-proxy', () => tcpReady('127.0.0.1', hpPort), { proc: hp, timeoutMs: 15_000 });
  const relayPort = await freePort();
  const relay = spawnEngine('node-relay', process.execPath, ['--max-semi-space-size=16', join(repoRoot, 'bench', 'gateway', 'node-relay.ts'), String(relayPort), String(upstreamPort)], { logFile: join(haproxy.dir, 'node-relay.log') });
  await waitUntil('node relay', () => tcpReady('127.0.0.1', relayPort), { proc: relay, timeoutMs: 15_000 });
  const gw = await gateway(consul, ['--access-log=false']);
  const gwLog = await gateway(consul, []);
  try {
    await routeReady(gw.adminUrl, 'bench.gantry.test', () => true);
    await routeReady(gwLog.adminUrl, 'bench.gantry.test', () => true);
    const host = 'bench.gantry.test';
    const runs: Array<[string, number, number[]]> = [
      ['direct', upstreamPort, (await upstream.processes()).workers], ['haproxy', haproxy.httpPort, (await haproxy.processes()).workers],
      ['http-proxy', hpPort, [hp.pid]], ['gateway', gw.port, [gw.proc.pid]], ['gateway-access-log', gwLog.port, [gwLog.proc.pid]],
      ['node-relay', relayPort, [relay.pid]],
    ];
    const got = new Map<string, Wrk>();
    for (const [name, port, pids] of runs) {
      await warm(port, host);
      got.set(name, await wrk(port, host, pids));
    }
    // a second round, in reverse, so drift in machine load touches every contender alike
    for (const [name, port, pids] of [...runs].reverse()) {
      const w = await wrk(port, host, pids);
      const prev = got.get(name)!;
      got.set(name, {
        rps: (prev.rps + w.rps) / 2, p99ms: Math.max(prev.p99ms, w.p99ms), requests: prev.requests + w.requests, errors: prev.errors + w.errors,
        wrkCores: (prev.wrkCores + w.wrkCores) / 2, cpuUsPerRequest: (prev.cpuUsPerRequest * prev.requests + w.cpuUsPerRequest * w.requests) / (prev.requests + w.requests),
      });
    }
    const load = loadavg().map((x) => x.toFixed(1)).join(' ');
    const g = got.get('gateway')!;
    const h = got.get('haproxy')!;
    const p = got.get('http-proxy')!;
    const d = got.get('direct')!;
    const gl = got.get('gateway-access-log')!;
    const r = got.get('node-relay')!;
    const cores = [...got].map(([k, w]) => `${k} ${w.wrkCores.toFixed(2)}`).join(', ');
    const notes = (extra: string): string => `${WRK}, 2 rounds averaged (p99: worse of the two); upstream: HAProxy answering 200 itself; HAProxy proxy nbthread 1 (one core, like Node); gateway without access log unless named; errors gw ${g.errors} haproxy ${h.errors} http-proxy ${p.errors}; ${extra}; ${TWO_CORES}, shared with other work too (load avg ${load} at the end): under contention each process gets a share of the CPU, so requests/s follow CPU per request; wrk took (cores) ${cores}`;
    return [
      result({ suite: 'gateway', metric: 'gateway_rps', value: g.rps, unit: 'req/s', n: g.requests, baseline_metric: 'haproxy_rps', baseline_value: h.rps, notes: notes('target ratio ≥ 0.5') }),
      result({ suite: 'gateway', metric: 'gateway_rps_vs_http_proxy', value: g.rps, unit: 'req/s', n: g.requests, baseline_metric: 'http_proxy_rps', baseline_value: p.rps, notes: notes('target ratio ≥ 2') }),
      result({ suite: 'gateway', metric: 'gateway_rps_vs_direct', value: g.rps, unit: 'req/s', n: g.requests, baseline_metric: 'direct_rps', baseline_value: d.rps, notes: notes('direct: wrk straight at the upstream') }),
      result({ suite: 'gateway', metric: 'gateway_access_log_rps', value: gl.rps, unit: 'req/s', n: gl.requests, baseline_metric: 'gateway_rps', baseline_value: g.rps, notes: notes('the cost of one JSON access-log line per request') }),
      result({ suite: 'gateway', metric: 'gateway_cpu_us_per_request', value: g.cpuUsPerRequest, unit: 'µs', n: g.requests, baseline_metric: 'haproxy_cpu_us_per_request', baseline_value: h.cpuUsPerRequest, notes: notes(`user+sys CPU of the proxy process(es) over the wrk runs (/proc/<pid>/stat) per request: the figure least moved by machine load; http-proxy ${p.cpuUsPerRequest.toFixed(1)} µs, gateway with access log ${gl.cpuUsPerRequest.toFixed(1)} µs, the upstream alone (direct) ${d.cpuUsPerRequest.toFixed(1)} µs`) }),
      result({ suite: 'gateway', metric: 'gateway_cpu_us_per_request_vs_node_floor', value: g.cpuUsPerRequest, unit: 'µs', n: g.requests, baseline_metric: 'node_relay_cpu_us_per_request', baseline_value: r.cpuUsPerRequest, notes: notes(`the floor: bench/gateway/node-relay.ts, a bare Node socket relay to the one upstream (head forwarded with X-Forwarded-For, Content-Length answers only; no routing, policy, checks, timeouts or metrics; same 16 MB young generation) at ${r.rps.toFixed(0)} req/s, p99 ${r.p99ms} ms: what Gantry's routing, checks and policy cost over what Node's sockets cost here`) }),
      result({ suite: 'gateway', metric: 'gateway_p99', value: g.p99ms, unit: 'ms', n: g.requests, baseline_metric: 'haproxy_p99', baseline_value: h.p99ms, notes: notes('target ratio ≤ 2') }),
      result({ suite: 'gateway', metric: 'http_proxy_p99', value: p.p99ms, unit: 'ms', n: p.requests, baseline_metric: 'haproxy_p99', baseline_value: h.p99ms, notes: notes('node http-proxy for comparison') }),
      result({ suite: 'gateway', metric: 'direct_p99', value: d.p99ms, unit: 'ms', n: d.requests, baseline_metric: 'haproxy_p99', baseline_value: h.p99ms, notes: notes('the upstream alone') }),
    ];
  } finally {
    await Promise.allSettled([haproxy.stop(), hp.stop(), relay.stop(), gw.stop(), gwLog.stop()]);
  }
}

/** a 50,000-service table in a child process (bench/gateway/big-table.ts); RSS read from /proc by us between its phases */
async function bigTable(): Promise<BenchResult[]> {
  const child = spawn(process.execPath, [...GATEWAY_NODE_FLAGS, join(repoRoot, 'bench', 'gateway', 'big-table.ts'), '50000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  const marks: Record<string, number> = {};
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const m of out.matchAll(/^(snapshot|swapped) $/gm)) {
        if (marks[m[1]!] !== undefined) continue;
        marks[m[1]!] = rss();
        child.stdin.write('go\n');
      }
    });
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
  const times = JSON.parse(/^times (.*)$/m.exec(out)?.[1] ?? 'null') as { cold: number[]; change1: number[]; change1k: number[]; policy: number[]; routes: number } | null;
  if (!times) throw new Error('bench/gateway/big-table.ts gave no times');
  const all = (l: number[]): string => l.map((x) => x.toFixed(0)).join(', ');
  const common = `50,000 services, ${times.routes} routes (<service>.<domain> + urlprefix-/pN each), through RouteSource → TableBuilder → Gateway.swap in one process (${GATEWAY_NODE_FLAGS.join(' ')}, as gantry gateway runs); every changed snapshot made as core's watcher makes it (new objects for every instance); target ≤ 500 ms; no honest baseline (fabio is not installed here; the gateway before incremental builds rebuilt the whole table on every change: 10.6 s measured under load avg ~30); ${TWO_CORES}`;
  return [
    result({ suite: 'gateway', metric: 'table_50k_change_build_swap_p99', value: percentile(times.change1, 99), unit: 'ms', n: times.change1.length, baseline_metric: null, baseline_value: null, notes: `one service's instance turns critical or back, the new table swapped: p50 ${percentile(times.change1, 50).toFixed(1)} ms (all: ${all(times.change1)}); ${common}` }),
    result({ suite: 'gateway', metric: 'table_50k_change_1000_build_swap_p50', value: percentile(times.change1k, 50), unit: 'ms', n: times.change1k.length, baseline_metric: null, baseline_value: null, notes: `1,000 services change in one snapshot (all: ${all(times.change1k)}); ${common}` }),
    result({ suite: 'gateway', metric: 'table_50k_policy_change_build_swap_p99', value: percentile(times.policy, 99), unit: 'ms', n: times.policy.length, baseline_metric: null, baseline_value: null, notes: `one service's KV policy (a canary weight) changes: p50 ${percentile(times.policy, 50).toFixed(1)} ms (all: ${all(times.policy)}); ${common}` }),
    result({ suite: 'gateway', metric: 'table_50k_cold_build_swap_p50', value: percentile(times.cold, 50), unit: 'ms', n: times.cold.length, baseline_metric: null, baseline_value: null, notes: `the first table of a fresh gateway from the whole snapshot (all: ${all(times.cold)}); ${common}` }),
    result({ suite: 'gateway', metric: 'table_50k_rss_mb', value: marks.swapped ?? NaN, unit: 'MB', n: 1, baseline_metric: 'rss_with_snapshot_only_mb', baseline_value: marks.snapshot ?? NaN, notes: 'RSS (from /proc/<pid>/status) of a process holding the 50,000-service snapshot, then with the first live table too (the ratio is the table\'s cost on top of the catalog it is built from)' }),
  ];
}

async function canaryChange(consul: ConsulEngine, upstreamPort: number): Promise<BenchResult[]> {
  const gw = await gateway(consul, ['--access-log=false']);
  try {
    await routeReady(gw.adminUrl, 'bench.gantry.test', () => true);
    const applied: number[] = [];
    const consulSeen: number[] = [];
    const key = 'gantry/gateway/policy/bench';
    await put(consul.addr, `/v1/kv/${key}`, { split: [{ subset: { v: '1' }, weight: 100 }] });
    for (let i = 1; i <= 40; i++) {
      const weight = i;
      const idx = (await fetch(`${consul.addr}/v1/kv/${key}`)).headers.get('x-consul-index');
      // Consul's own wake-up: a blocking query on the key, started before the change
      const blocking = fetch(`${consul.addr}/v1/kv/${key}?index=${idx}&wait=10s`).then(() => nowMs());
      await sleep(20);
      const t0 = nowMs();
      await put(consul.addr, `/v1/kv/${key}`, { split: [{ subset: { v: '1' }, weight: 100 - weight }, { subset: { v: '2' }, weight }] });
      await waitUntil('weight applied', async () => (await (await fetch(`${gw.adminUrl}/routes`)).text()).includes(`"weight":${weight}}`), { timeoutMs: 10_000, intervalMs: 1 });
      applied.push(nowMs() - t0);
      consulSeen.push((await blocking) - t0);
    }
    void upstreamPort;
    return [result({
      suite: 'gateway', metric: 'kv_weight_change_applied_p99', value: percentile(applied, 99), unit: 'ms', n: applied.length,
      baseline_metric: 'consul_blocking_query_wakeup_p99', baseline_value: percentile(consulSeen, 99),
      notes: `PUT of policy/<service> → the new weight in /routes (polled every ~1 ms, which costs the gateway CPU too); p50 ${percentile(applied, 50).toFixed(1)} ms; baseline: a blocking GET on the same key started before the PUT; target ≤ 50 ms; ${TWO_CORES}`,
    })];
  } finally {
    await gw.stop();
  }
}

async function mirroring(consul: ConsulEngine): Promise<BenchResult[]> {
  // a slow mirror: answers after 200 ms
  const slow = http.createServer((req, res) => { req.resume(); setTimeout(() => res.end('slow'), 200); });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
  const slowPort = (slow.address() as { port: number }).port;
  await put(consul.addr, '/v1/agent/service/register', { ID: 'slow-1', Name: 'slowmirror', Address: '127.0.0.1', Port: slowPort });
  const gw = await gateway(consul, ['--access-log=false']);
  try {
    await routeReady(gw.adminUrl, 'bench.gantry.test', () => true);
    const setMirror = async (on: boolean): Promise<void> => {
      await put(consul.addr, '/v1/kv/gantry/gateway/policy/bench', on ? { mirror: { service: 'slowmirror', percent: 100 } } : {});
      await routeReady(gw.adminUrl, 'bench.gantry.test', (t) => t.includes('"mirror":{"service":"slowmirror","percent":100}') === on);
    };
    await setMirror(false);
    await warm(gw.port, 'bench.gantry.test');
    // off, on, on, off: drift in machine load touches both alike
    const runs: Record<'on' | 'off', Wrk[]> = { on: [], off: [] };
    for (const mode of ['off', 'on', 'on', 'off'] as const) {
      await setMirror(mode === 'on');
      runs[mode].push(await wrk(gw.port, 'bench.gantry.test', [gw.proc.pid]));
    }
    const mean = (l: Wrk[]): Wrk => ({ ...l[0]!, rps: (l[0]!.rps + l[1]!.rps) / 2, p99ms: Math.max(l[0]!.p99ms, l[1]!.p99ms), requests: l[0]!.requests + l[1]!.requests, errors: l[0]!.errors + l[1]!.errors });
    const off = mean(runs.off);
    const on = mean(runs.on);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    const sum = (name: string): number => metrics.split('\n').filter((l) => l.startsWith(name)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    return [result({
      suite: 'gateway', metric: 'mirror_100pct_slow_rps', value: on.rps, unit: 'req/s', n: on.requests, baseline_metric: 'mirror_off_rps', baseline_value: off.rps,
      notes: `${WRK}, runs off/on/on/off, each mode averaged (p99: worse of two); mirror answers after 200 ms; mirrors sent ${sum('gantry_gateway_mirror_sent_total')}, dropped ${sum('gantry_gateway_mirror_drops_total')} (64 in flight max); p99 on ${on.p99ms} ms vs off ${off.p99ms} ms; errors on ${on.errors}; target ratio ≥ 0.8; ${TWO_CORES}`,
    })];
  } finally {
    await gw.stop();
    slow.closeAllConnections();
    slow.close();
  }
}

export async function run(): Promise<BenchResult[]> {
  const consul = await startConsul();
  const upstream = await startHAProxy({ config: (p) => answeringConfig(p.dir, p.httpPort, { status: 200, body: 'hello-from-the-upstream' }) });
  try {
    const out: BenchResult[] = [];
    // the service every part routes bench.gantry.test to
    await put(consul.addr, '/v1/agent/service/register', { ID: 'bench-1', Name: 'bench', Address: '127.0.0.1', Port: upstream.httpPort });
    // GANTRY_BENCH_GATEWAY=throughput,table,canary,mirror picks parts (default: all)
    const all = ['throughput', 'table', 'canary', 'mirror'];
    const parts = new Set((process.env.GANTRY_BENCH_GATEWAY ?? all.join(',')).split(',').map((x) => x.trim()));
    const unknown = [...parts].filter((x) => !all.includes(x));
    if (unknown.length) throw new Error(`GANTRY_BENCH_GATEWAY: unknown part(s) ${unknown.map((x) => JSON.stringify(x)).join(', ')}; the parts are ${all.join(', ')}`);
    if (parts.has('throughput')) out.push(...await throughput(consul, upstream));
    if (parts.has('table')) out.push(...await bigTable());
    if (parts.has('canary')) out.push(...await canaryChange(consul, upstream.httpPort));
    if (parts.has('mirror')) out.push(...await mirroring(consul));
    return out;
  } finally {
    await Promise.allSettled([consul.stop(), upstream.stop()]);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const r of await run()) process.stdout.write(`${JSON.stringify(r)}\n`);
}
