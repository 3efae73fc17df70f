// `npm run bench -- templater`: the templater against real engines, each figure
// next to a baseline measured in the same run on the same machine.
//   1. failed requests (wrk: socket errors + non-2xx) over 50 changes under load,
//      half membership-only (Runtime API) and half new services (reload);
//      baseline: 50 raw HAProxy reloads at the same pace under the same load
//   2. 2,000 services × 5 instances: full render + check + apply (reload confirmed);
//      baseline: `haproxy -c` alone on the same file
//   3. container start → first 200 through HAProxy by DNS name (dnsmasq), p50/p99
//      over 50 containers (registrator + templater); baseline: the same container's
//      first 200 on its published port
//   4. Consul requests a minute while idle with 2,000 services; baseline: 20 services
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import { fileURLToPath } from 'node:url';
import { result, percentile, nowMs, TWO_CORES, type BenchResult } from './lib.ts';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startHAProxy, answeringConfig, type HAProxyEngine } from '../test/harness/engines/haproxy.ts';
import { startDnsmasq } from '../test/harness/engines/dnsmasq.ts';
import { ensureDocker, newRunId, runContainer, cleanupContainers, RUN_LABEL } from '../test/harness/engines/docker.ts';
import { spawnEngine, tempDir, removeDir, freePorts, waitUntil, sleep, type ManagedProcess } from '../test/harness/process.ts';
import { socketCommand } from '../test/harness/unix-socket.ts';
import { repoRoot } from '../test/harness/bins.ts';

const SUITE = 'templater';
const log = (line: string): void => { process.stderr.write(`bench templater: ${line}\n`); };

/** the templater's bootstrap HAProxy: its sockets, nothing served yet */
const bootstrap = (p: { dir: string; httpPort: number }): string => answeringConfig(p.dir, p.httpPort, { status: 503, body: 'bootstrap' });

/** an HAProxy answering 200 on many ports: cheap backends that leave the CPU to what is measured */
async function backendFarm(count: number): Promise<{ engine: HAProxyEngine; ports: number[] }> {
  const ports = await freePorts(count);
  const engine = await startHAProxy({
    config: (p) => `global
    stats socket ${join(p.dir, 'admin.sock')} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend farm
${ports.map((port) => `    bind 127.0.0.1:${port}`).join('\n')}
    http-request return status 200 content-type text/plain string ok
`,
  });
  return { engine, ports };
}

interface Templater { proc: ManagedProcess; logs(): Array<Record<string, unknown>>; waitLog(what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>; metricsUrl(): Promise<string> }

function startTemplater(dir: string, name: string, args: string[]): Templater {
  const logFile = join(dir, `${name}.log`);
  const proc = spawnEngine(name, process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), 'templater', '--admin-addr', '127.0.0.1:0', ...args], { logFile });
  const logs = (): Array<Record<string, unknown>> => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } });
  const waitLog = (what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> => waitUntil(what, async () => logs().find(pred), { proc, timeoutMs, intervalMs: 20 });
  return {
    proc, logs, waitLog,
    metricsUrl: async () => `${(await waitLog('admin', (l) => typeof l.url === 'string' && String(l.msg).startsWith('admin endpoint'))).url as string}/metrics`,
  };
}

async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

async function consulPut(addr: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${addr}${path}`, { method: 'PUT', body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
}

const registerOne = (addr: string, id: string, name: string, port: number, address = '127.0.0.1'): Promise<void> =>
  consulPut(addr, '/v1/catalog/register', { Node: 'bench-node', Address: '127.0.0.1', SkipNodeUpdate: true, Service: { ID: id, Service: name, Address: address, Port: port } });
const deregisterOne = (addr: string, id: string): Promise<void> => consulPut(addr, '/v1/catalog/deregister', { Node: 'bench-node', ServiceID: id });

/** services × instances through /v1/txn, 64 operations a request */
async function registerMany(addr: string, services: number, instances: number): Promise<void> {
  await consulPut(addr, '/v1/catalog/register', { Node: 'bench-node', Address: '127.0.0.1' });
  const ops: unknown[] = [];
  for (let s = 0; s < services; s++) {
    for (let i = 0; i < instances; i++) {
      const n = s * instances + i;
      ops.push({ Service: { Verb: 'set', Node: 'bench-node', Service: { ID: `s${s}-${i}`, Service: `svc${s}`, Address: `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`, Port: 8080 } } });
    }
  }
  for (let i = 0; i < ops.length; i += 64) await consulPut(addr, '/v1/txn', ops.slice(i, i + 64));
}

interface WrkResult { requests: number; socketErrors: number; non2xx: number; raw: string }

function parseWrk(out: string): WrkResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1, 5).map(Number).reduce((a, b) => a + b, 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { requests, socketErrors, non2xx, raw: out };
}

function wrk(url: string, host: string, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t1', '-c16', `-d${seconds}s`, '-H', `Host: ${host}`, url]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('close', () => resolve(parseWrk(out)));
  });
}

/** GET / with a Host header; the status, or 0 when it failed */
const get = (host: string, port: number, hostHeader: string): Promise<number> => new Promise((resolve) => {
  const req = http.request({ host, port, path: '/', headers: { host: hostHeader }, agent: false, timeout: 500 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
  req.on('error', () => resolve(0));
  req.on('timeout', () => req.destroy());
  req.end();
});

async function changesUnderLoad(dir: string): Promise<BenchResult[]> {
  const consul = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const farm = await backendFarm(8);
  const stop = async (): Promise<void> => { await Promise.allSettled([consul.stop(), haproxy.stop(), farm.engine.stop()]); };
  try {
    const [p0, p1, p2, ...spare] = farm.ports;
    for (const [i, p] of [p0!, p1!, p2!].entries()) await registerOne(consul.addr, `web-${i}`, 'web', p);
    const t = startTemplater(dir, 'templater-load', [
      '--consul-addr', consul.addr, '--haproxy-cfg', haproxy.cfgFile, '--haproxy-master-socket', haproxy.masterSocket,
      '--haproxy-admin-socket', haproxy.adminSocket, '--haproxy-state-file', join(dir, 'state-load'), '--l7-bind', `127.0.0.1:${haproxy.httpPort}`,
      '--state-dir', join(dir, 'st-load'), '--vip-manage=false', '--wait', '20ms:200ms', '--max-reloads', '5',
    ]);
    const url = `http://127.0.0.1:${haproxy.httpPort}/`;
    await waitUntil('web through HAProxy', async () => (await get('127.0.0.1', haproxy.httpPort, 'web.gantry.test')) === 200, { timeoutMs: 30_000 });
    const metricsUrl = await t.metricsUrl();
    const paceMs = 300;
    const seconds = Math.ceil((50 * paceMs) / 1000) + 4;

    // with the templater: 25 membership changes (Runtime API) and 25 new services (reload)
    const reloadsBefore = await metric(metricsUrl, 'gantry_templater_reloads_total');
    const runtimeBefore = await metric(metricsUrl, 'gantry_templater_runtime_updates_total', { result: 'ok' });
    const load = wrk(url, 'web.gantry.test', seconds);
    await sleep(1500);
    const present = new Set([0, 1, 2]);
    for (let i = 0; i < 50; i++) {
      if (i % 2 === 0) {
        // membership only: one instance joins or leaves; at least two stay
        const k = (i / 2) % 5;
        const id = `web-x${k}`;
        if (present.has(10 + k)) { await deregisterOne(consul.addr, id); present.delete(10 + k); }
        else { await registerOne(consul.addr, id, 'web', spare[k]!); present.add(10 + k); }
      } else {
        await registerOne(consul.addr, `new-${i}`, `new${i}`, p0!);
      }
      await sleep(paceMs);
    }
    const withTemplater = await load;
    await sleep(1000);
    const reloads = (await metric(metricsUrl, 'gantry_templater_reloads_total')) - reloadsBefore;
    const runtime = (await metric(metricsUrl, 'gantry_templater_runtime_updates_total', { result: 'ok' })) - runtimeBefore;
    await t.proc.stop();

    // baseline: raw reloads through the master CLI at the same pace, same load, same config
    const base = wrk(url, 'web.gantry.test', seconds);
    await sleep(1500);
    for (let i = 0; i < 50; i++) {
      await socketCommand(haproxy.masterSocket, 'reload').catch(() => undefined);
      await sleep(paceMs);
    }
    const raw = await base;
    const failed = withTemplater.socketErrors + withTemplater.non2xx;
    const rawFailed = raw.socketErrors + raw.non2xx;
    log(`under changes: ${withTemplater.requests} requests, ${failed} failed; raw reloads: ${raw.requests} requests, ${rawFailed} failed`);
    return [
      result({
        suite: SUITE, metric: 'failed_requests_over_50_changes', value: failed, unit: 'requests', n: withTemplater.requests,
        baseline_metric: 'failed_requests_over_50_raw_reloads', baseline_value: rawFailed,
        notes: `wrk -t1 -c16 keep-alive for ${seconds}s; 25 membership changes (${runtime} Runtime API updates) + 25 new services (${reloads} reloads, confirmed); change every ${paceMs} ms; socket errors ${withTemplater.socketErrors}, non-2xx ${withTemplater.non2xx}; baseline ${raw.requests} requests, socket errors ${raw.socketErrors}, non-2xx ${raw.non2xx}; ${TWO_CORES}`,
      }),
    ];
  } finally {
    await stop();
  }
}

async function bigCatalog(dir: string): Promise<BenchResult[]> {
  const consul = await startConsul();
  const small = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const haproxySmall = await startHAProxy({ config: bootstrap });
  const stop = async (): Promise<void> => { await Promise.allSettled([consul.stop(), small.stop(), haproxy.stop(), haproxySmall.stop()]); };
  try {
    const t0 = nowMs();
    await registerMany(consul.addr, 2000, 5);
    await registerMany(small.addr, 20, 5);
    log(`registered 2000 × 5 instances in ${Math.round(nowMs() - t0)} ms`);
    const common = (h: HAProxyEngine, tag: string): string[] => [
      '--haproxy-cfg', h.cfgFile, '--haproxy-master-socket', h.masterSocket, '--haproxy-admin-socket', h.adminSocket,
      '--haproxy-state-file', join(dir, `state-${tag}`), '--l7-bind', `127.0.0.1:${h.httpPort}`, '--state-dir', join(dir, `st-${tag}`),
      '--vip-manage=false', '--wait', '20ms:200ms', '--consul-wait', '15s', '--resync-interval', '0',
    ];
    const big = startTemplater(dir, 'templater-2000', ['--consul-addr', consul.addr, ...common(haproxy, 'big')]);
    const smallT = startTemplater(dir, 'templater-20', ['--consul-addr', small.addr, ...common(haproxySmall, 'small')]);
    const applied = (l: Record<string, unknown>): boolean => l.template === 'haproxy' && String(l.msg).startsWith('rendered, checked, written and reloaded');
    const first = await big.waitLog('first apply', applied, 120_000);
    await smallT.waitLog('first apply (20)', applied, 60_000);
    // warm full applies: a new service each time (a new backend: render, check, write, reload, confirm)
    const samples: number[] = [];
    const renders: number[] = [];
    for (let i = 0; i < 7; i++) {
      const seen = big.logs().filter(applied).length;
      await registerOne(consul.addr, `extra-${i}`, `extra${i}`, 8080, '10.99.0.1');
      await waitUntil('apply', async () => big.logs().filter(applied).length > seen, { timeoutMs: 60_000, intervalMs: 20 });
      const l = big.logs().filter(applied).pop()!;
      samples.push(Number(l.ms));
      log(`full apply: ${JSON.stringify(Object.fromEntries(Object.entries(l).filter(([k]) => k.endsWith('Ms') || k === 'ms')))}`);
      renders.push(Number(l.renderMs) + Number(l.viewMs));
    }
    const cfg = readFileSync(haproxy.cfgFile, 'utf8');
    const checks: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c0 = nowMs();
      const r = spawnSync('haproxy', ['-c', '-f', haproxy.cfgFile], { encoding: 'utf8' });
      checks.push(nowMs() - c0);
      if (r.status !== 0) throw new Error(`haproxy -c failed: ${r.stderr}`);
    }
    const servers = (cfg.match(/^\s+server /gm) ?? []).length;
    const results: BenchResult[] = [
      result({
        suite: SUITE, metric: 'full_apply_ms_2000x5', value: percentile(samples, 50), unit: 'ms', n: samples.length,
        baseline_metric: 'haproxy_check_only_ms_same_config', baseline_value: percentile(checks, 50),
        notes: `render + haproxy -c + atomic write + master CLI reload confirmed by show proc + Runtime API sync, for a new service among 2000 × 5 (${servers} server lines, ${cfg.length} bytes); samples ${samples.join(',')} ms (max ${Math.max(...samples)}); view+render ${percentile(renders, 50)} ms p50; first apply after start ${String(first.ms)} ms; target ≤ 500 ms; ${TWO_CORES}`,
      }),
    ];

    // idle: requests to Consul a minute with 2000 services, next to 20 services
    const bigUrl = await big.metricsUrl();
    const smallUrl = await smallT.metricsUrl();
    await sleep(2000);
    const b0 = await metric(bigUrl, 'gantry_templater_consul_requests_total');
    const s0 = await metric(smallUrl, 'gantry_templater_consul_requests_total');
    const windowMs = Number(process.env.GANTRY_BENCH_IDLE_S ?? 60) * 1000;
    await sleep(windowMs);
    const b1 = await metric(bigUrl, 'gantry_templater_consul_requests_total');
    const s1 = await metric(smallUrl, 'gantry_templater_consul_requests_total');
    const perMin = (d: number): number => (d * 60_000) / windowMs;
    const byEndpoint = async (url: string): Promise<string> => {
      const out: string[] = [];
      for (const e of ['catalog', 'health', 'service', 'node', 'kv']) out.push(`${e}=${await metric(url, 'gantry_templater_consul_requests_total', { endpoint: e })}`);
      return out.join(' ');
    };
    results.push(result({
      suite: SUITE, metric: 'consul_requests_per_min_idle_2000_services', value: perMin(b1 - b0), unit: 'requests/min', n: 1,
      baseline_metric: 'consul_requests_per_min_idle_20_services', baseline_value: perMin(s1 - s0),
      notes: `${windowMs / 1000}s idle window, blocking queries with --consul-wait 15s (default 5m: ~0.4/min); totals since start (2000): ${await byEndpoint(bigUrl)}; (20): ${await byEndpoint(smallUrl)}`,
    }));
    await big.proc.stop();
    await smallT.proc.stop();
    return results;
  } finally {
    await stop();
  }
}

async function containerToFirst200(dir: string): Promise<BenchResult[]> {
  const docker = await ensureDocker();
  const runId = newRunId();
  const consul = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '');
  const dnsmasq = await startDnsmasq({ hostsFiles: [hostsFile] });
  const procs: ManagedProcess[] = [];
  const stop = async (): Promise<void> => {
    await cleanupContainers(docker, runId).catch(() => 0);
    await Promise.allSettled([...procs.map((p) => p.stop()), consul.stop(), haproxy.stop(), dnsmasq.stop()]);
  };
  try {
    procs.push(spawnEngine('registrator', process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), 'registrator', '--consul-addr', consul.addr, '--admin-addr', '127.0.0.1:0', '--require-label', `${RUN_LABEL}=${runId}`], { logFile: join(dir, 'registrator.log') }));
    const t = startTemplater(dir, 'templater-docker', [
      '--consul-addr', consul.addr, '--haproxy-cfg', haproxy.cfgFile, '--haproxy-master-socket', haproxy.masterSocket,
      '--haproxy-admin-socket', haproxy.adminSocket, '--haproxy-state-file', join(dir, 'state-docker'), '--l7-bind', `127.0.0.1:${haproxy.httpPort}`,
      '--l7-address', '127.0.0.1', '--hosts-file', hostsFile, '--dnsmasq-pid-file', dnsmasq.pidFile,
      '--state-dir', join(dir, 'st-docker'), '--vip-manage=false', '--wait', '10ms:100ms', '--consul-min-spacing', '10ms',
    ]);
    procs.push(t.proc);
    const resolver = new Resolver({ timeout: 200, tries: 1 });
    resolver.setServers([`127.0.0.1:${dnsmasq.port}`]);
    // one service up first, so the templater has rendered once
    await runContainer(docker, { runId, env: { SERVICE_NAME: 'warmup' }, cmd: ['sh', '-c', 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www'], publish: { '80/tcp': '0' } });
    await waitUntil('warmup', async () => { try { return (await resolver.resolve4('warmup.gantry.test')).length > 0 && (await get('127.0.0.1', haproxy.httpPort, 'warmup.gantry.test')) === 200; } catch { return false; } }, { timeoutMs: 60_000 });
    const viaName: number[] = [];
    const direct: number[] = [];
    const startCall: number[] = [];
    const registered: number[] = [];
    const resolvedAt: number[] = [];
    for (let i = 0; i < 50; i++) {
      const name = `bench-c${i}`;
      const c = await runContainer(docker, { runId, env: { SERVICE_NAME: name }, cmd: ['sh', '-c', 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www'], publish: { '80/tcp': '0' }, start: false });
      const tCall = nowMs();
      await c.start();
      // t0: the Docker API says the container runs (its start event is out)
      const t0 = nowMs();
      startCall.push(t0 - tCall);
      let done = false;
      const hostPortP = c.inspect().then((x) => Number(x.NetworkSettings.Ports['80/tcp']?.[0]?.HostPort));
      const directP = (async () => {
        const port = await hostPortP;
        while (!done) {
          if ((await get('127.0.0.1', port, 'x')) === 200) { direct.push(nowMs() - t0); return; }
          await sleep(5);
        }
      })();
      const consulP = (async () => {
        while (!done) {
          const r = await fetch(`${consul.addr}/v1/catalog/service/${name}`).then((x) => x.json() as Promise<unknown[]>).catch(() => []);
          if (r.length) { registered.push(nowMs() - t0); return; }
          await sleep(5);
        }
      })();
      let resolved = false;
      for (;;) {
        let ip: string | undefined;
        try { ip = (await resolver.resolve4(`${name}.gantry.test`))[0]; } catch { ip = undefined; }
        if (ip && !resolved) { resolved = true; resolvedAt.push(nowMs() - t0); }
        if (ip && (await get(ip, haproxy.httpPort, `${name}.gantry.test`)) === 200) { viaName.push(nowMs() - t0); break; }
        if (nowMs() - t0 > 30_000) throw new Error(`${name}: no 200 by name in 30 s`);
        await sleep(5);
      }
      await Promise.race([Promise.all([directP, consulP]), sleep(2000)]);
      done = true;
    }
    log(`container → 200 by name: p50 ${Math.round(percentile(viaName, 50))} ms, p99 ${Math.round(percentile(viaName, 99))} ms; direct p50 ${Math.round(percentile(direct, 50))} ms`);
    return [
      result({
        suite: SUITE, metric: 'container_start_to_first_200_by_name_p50_ms', value: percentile(viaName, 50), unit: 'ms', n: viaName.length,
        baseline_metric: 'container_start_to_first_200_direct_p50_ms', baseline_value: percentile(direct, 50),
        notes: `from the Docker start call's return (container running; the call itself took p50 ${Math.round(percentile(startCall, 50))} ms); each container a new service: Docker event → registrator → Consul (registered p50 ${Math.round(percentile(registered, 50))} ms) → templater (new backend: check + reload; hosts file + SIGHUP dnsmasq; name resolves p50 ${Math.round(percentile(resolvedAt, 50))} ms) → HAProxy 200; polled every 5 ms; ${TWO_CORES}`,
      }),
      result({
        suite: SUITE, metric: 'container_start_to_first_200_by_name_p99_ms', value: percentile(viaName, 99), unit: 'ms', n: viaName.length,
        baseline_metric: 'container_start_to_first_200_direct_p99_ms', baseline_value: percentile(direct, 99),
        notes: `target p99 ≤ 500 ms; max ${Math.round(Math.max(...viaName))} ms; registered in Consul p99 ${Math.round(percentile(registered, 99))} ms; name resolves p99 ${Math.round(percentile(resolvedAt, 99))} ms`,
      }),
    ];
  } finally {
    await stop();
  }
}

export async function run(): Promise<BenchResult[]> {
  const dir = tempDir('bench-templater');
  try {
    // GANTRY_BENCH_TEMPLATER=load,catalog,docker runs only those parts
    const only = (process.env.GANTRY_BENCH_TEMPLATER ?? 'load,catalog,docker').split(',');
    const out: BenchResult[] = [];
    if (only.includes('load')) out.push(...await changesUnderLoad(dir));
    if (only.includes('catalog')) out.push(...await bigCatalog(dir));
    if (only.includes('docker')) out.push(...await containerToFirst200(dir));
    removeDir(dir);
    return out;
  } catch (err) {
    log(`failed; logs kept in ${dir}`);
    throw err;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const r of await run()) process.stdout.write(`${JSON.stringify(r)}\n`);
}
