// `npm run bench -- templater`: the templater against real engines, each figure
// next to a baseline measured in the same run on the same machine, measured from
// outside the process (Consul write → what HAProxy does), never from its log.
//   1. instance added / removed under `wrk -t1 -c16` → HAProxy's `show servers
//      state` lists exactly the new set (polled every 10 ms), p50/p99 over 50
//      changes of each kind, and failed requests; baseline: consul-template
//      v0.41.1 (same template shape, check + master-CLI reload), same run
//   2. new service → first 200 by Host, p50/p99 over 50 new services; baseline:
//      consul-template
//   3. failed requests over the templater's changes next to as many raw HAProxy
//      reloads as the templater did, at the same pace, under the same load
//   4. 2,000 services × 5 instances: a new service → served (first 200 by Host);
//      a reload-path change → file changed and reload confirmed; baseline:
//      consul-template on the same catalog; idle Consul requests a minute
//      (baseline: 20 services)
//   5. container start → first 200 through HAProxy by DNS name (dnsmasq), p50/p99
//      over 50 containers (registrator + templater); baseline: the same container's
//      first 200 on its published port
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import { fileURLToPath } from 'node:url';
import { result, percentile, nowMs, TWO_CORES, fileChangedFrom, type BenchResult } from './lib.ts';
import { homedir } from 'node:os';
import { startConsul, type ConsulEngine } from '../test/harness/engines/consul.ts';
import { startHAProxy, answeringConfig, type HAProxyEngine } from '../test/harness/engines/haproxy.ts';
import { startDnsmasq } from '../test/harness/engines/dnsmasq.ts';
import { ensureDocker, newRunId, runContainer, cleanupContainers, RUN_LABEL } from '../test/harness/engines/docker.ts';
import { spawnEngine, tempDir, removeDir, freePorts, waitUntil, sleep, type ManagedProcess } from '../test/harness/process.ts';
import { socketCommand } from '../test/harness/unix-socket.ts';
import { repoRoot } from '../test/harness/bins.ts';
import { GANTRY_NODE_FLAGS } from '../test/harness/gantry.ts';

const SUITE = 'templater';
const log = (line: string): void => { process.stderr.write(`bench templater: ${line}\n`); };

/** the templater's bootstrap HAProxy: its sockets, nothing served yet */
export const bootstrap = (p: { dir: string; httpPort: number }): string => answeringConfig(p.dir, p.httpPort, { status: 503, body: 'bootstrap' });

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
  const proc = spawnEngine(name, process.execPath, [...GANTRY_NODE_FLAGS, join(repoRoot, 'cli', 'bin', 'gantry.js'), 'templater', '--admin-addr', '127.0.0.1:0', ...args], { logFile });
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

export async function consulPut(addr: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${addr}${path}`, { method: 'PUT', body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
}

const registerOne = (addr: string, id: string, name: string, port: number, address = '127.0.0.1'): Promise<void> =>
  consulPut(addr, '/v1/catalog/register', { Node: 'bench-node', Address: '127.0.0.1', SkipNodeUpdate: true, Service: { ID: id, Service: name, Address: address, Port: port } });
const deregisterOne = (addr: string, id: string): Promise<void> => consulPut(addr, '/v1/catalog/deregister', { Node: 'bench-node', ServiceID: id });

/** instance changes in one Consul write (/v1/txn): set or delete each, with a passing check when `checks` */
async function changeInstances(addr: string, verb: 'set' | 'delete', list: ReadonlyArray<{ id: string; port: number }>, checks: boolean): Promise<void> {
  const ops: unknown[] = [];
  for (const x of list) {
    // deleting a service deletes its checks with it
    if (verb === 'delete') { ops.push({ Service: { Verb: 'delete', Node: 'bench-node', Service: { ID: x.id, Service: 'web' } } }); continue; }
    ops.push({ Service: { Verb: 'set', Node: 'bench-node', Service: { ID: x.id, Service: 'web', Address: '127.0.0.1', Port: x.port } } });
    if (checks) ops.push({ Check: { Verb: 'set', Check: { Node: 'bench-node', CheckID: `check:${x.id}`, Name: 'bench', ServiceID: x.id, Status: 'passing' } } });
  }
  await consulPut(addr, '/v1/txn', ops);
}

/** the node service `s` is registered on: all on bench-node, or `perNode` services to each of bench-node-<k> */
export const benchNodeOf = (s: number, perNode?: number): string => (perNode ? `bench-node-${Math.floor(s / perNode)}` : 'bench-node');

/** services × instances through /v1/txn, 64 operations a request */
export async function registerMany(addr: string, services: number, instances: number, perNode?: number): Promise<void> {
  const nodes = perNode ? Math.ceil(services / perNode) : 1;
  for (let k = 0; k < nodes; k++) await consulPut(addr, '/v1/catalog/register', { Node: benchNodeOf(k * (perNode ?? 0), perNode), Address: '127.0.0.1' });
  const ops: unknown[] = [];
  for (let s = 0; s < services; s++) {
    for (let i = 0; i < instances; i++) {
      const n = s * instances + i;
      ops.push({ Service: { Verb: 'set', Node: benchNodeOf(s, perNode), Service: { ID: `s${s}-${i}`, Service: `svc${s}`, Address: `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`, Port: 8080 } } });
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

// ---- the tools under test: gantry templater and consul-template, on the same engines ----

const CT_VERSION = '0.41.1';

/** consul-template built from the Go module proxy and cached (scripts/build-consul-template.sh) */
function ensureConsulTemplate(): string {
  const bin = join(process.env.GANTRY_BIN_DIR ?? join(homedir(), '.cache', 'gantry', 'bin'), `consul-template-${CT_VERSION}`);
  if (existsSync(bin)) return bin;
  log('building consul-template (scripts/build-consul-template.sh)');
  const r = spawnSync('bash', [join(repoRoot, 'scripts', 'build-consul-template.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0 || !existsSync(bin)) throw new Error(`build-consul-template.sh failed: ${r.stderr.slice(-2000)}`);
  return bin;
}

/** the same frontend and backends as the shipped template (Host → l7_<service>.gantry.test), in consul-template's syntax */
function consulTemplateSource(h: HAProxyEngine): string {
  return `global
    master-worker
    mworker-max-reloads 5
    hard-stop-after 30s
    maxconn 4000
    stats socket ${h.adminSocket} mode 600 level admin expose-fd listeners

defaults
    mode http
    option forwardfor
    option idle-close-on-response
    option redispatch 1
    retries 2
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 10s
    default-server init-addr libc,none

frontend gantry_l7
    bind 127.0.0.1:${h.httpPort}
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    use_backend l7_%[var(txn.host)]
    default_backend gantry_no_route

backend gantry_no_route
    http-request return status 404 content-type text/plain string "no service for this host"
{{range services}}{{if ne .Name "consul"}}
backend l7_{{.Name}}.gantry.test
    balance roundrobin{{range service .Name}}
    server {{.ID}} {{.Address}}:{{.Port}}{{end}}
{{end}}{{end}}
`;
}

interface Tool { name: 'gantry' | 'consul-template'; stop(): Promise<void>; reloads(): Promise<number> }

export async function startGantry(dir: string, tag: string, consul: ConsulEngine, h: HAProxyEngine, extra: string[] = []): Promise<Tool & { t: Templater }> {
  const t = startTemplater(dir, `templater-${tag}`, [
    '--consul-addr', consul.addr, '--haproxy-cfg', h.cfgFile, '--haproxy-master-socket', h.masterSocket,
    '--haproxy-admin-socket', h.adminSocket, '--haproxy-state-file', join(dir, `state-${tag}`), '--l7-bind', `127.0.0.1:${h.httpPort}`,
    '--state-dir', join(dir, `st-${tag}`), '--vip-manage=false', '--wait', '20ms:200ms', '--consul-min-spacing', '10ms', '--haproxy-log', 'none', ...extra,
  ]);
  const url = await t.metricsUrl();
  return { name: 'gantry', t, stop: () => t.proc.stop(), reloads: () => metric(url, 'gantry_templater_reloads_total') };
}

async function startConsulTemplate(dir: string, tag: string, consul: ConsulEngine, h: HAProxyEngine): Promise<Tool> {
  const bin = ensureConsulTemplate();
  const src = join(dir, `ct-${tag}.ctmpl`);
  writeFileSync(src, consulTemplateSource(h));
  const cfg = join(dir, `ct-${tag}.hcl`);
  // its command: check, then reload through the master CLI (as the templater does)
  // (the master CLI refuses connections for a moment while the master re-executes after a reload:
  // the reload is retried, so consul-template does not exit on a refused connection; the templater
  // waits for each reload's confirmation by show proc, so never sends one into a re-executing master)
  // (its check with the environment the templater gives its own: glibc's malloc on huge pages)
  const command = `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 haproxy -c -q -f ${h.cfgFile} && for i in $(seq 1 50); do echo reload | socat - UNIX-CONNECT:${h.masterSocket} && exit 0; sleep 0.05; done; exit 1`;
  writeFileSync(cfg, `consul { address = "${consul.addr.replace(/^https?:\/\//, '')}" }
log_level = "warn"
wait { min = "20ms" max = "200ms" }
template {
  source = "${src}"
  destination = "${h.cfgFile}"
  command = ${JSON.stringify(['/bin/sh', '-c', command])}
  command_timeout = "30s"
  wait { min = "20ms" max = "200ms" }
}
`);
  const proc = spawnEngine(`consul-template-${tag}`, bin, ['-config', cfg], { logFile: join(dir, `consul-template-${tag}.log`) });
  const reloads0 = (await masterProcs(h)).reloads;
  return { name: 'consul-template', stop: () => proc.stop(), reloads: async () => (await masterProcs(h)).reloads - reloads0 };
}

/** show proc through the master CLI, retried while the master re-executes itself (with 20,000 backends under load, longer than 15 s) */
export const masterProcs = (h: HAProxyEngine, timeoutMs = 15_000): Promise<{ reloads: number; workers: number[] }> =>
  waitUntil('show proc', async () => h.processes().catch(() => undefined), { timeoutMs, intervalMs: 10 });

/** the servers of a backend that take traffic (running, not in maintenance or drain), as addr:port */
async function servingSet(h: HAProxyEngine, backend: string): Promise<string> {
  const text = await socketCommand(h.adminSocket, `show servers state ${backend}\n`, 2000).catch(() => '');
  const out: string[] = [];
  let cols: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# ')) { cols = line.slice(2).trim().split(/\s+/); continue; }
    const f = line.trim().split(/\s+/);
    if (!cols || f.length < 5) continue;
    const at = (n: string): string => f[cols!.indexOf(n)] ?? '';
    if (at('be_name') !== backend) continue;
    const admin = Number(at('srv_admin_state'));
    // running, and not in forced/inherited/resolution/hostname maintenance nor drain (a server declared
    // `disabled` and made ready at runtime keeps showing the config-maintenance bit 0x04 while it serves)
    if (Number(at('srv_op_state')) !== 2 || (admin & (0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40)) !== 0) continue;
    out.push(`${at('srv_addr')}:${at('srv_port')}`);
  }
  return out.sort().join(',');
}

interface AddRemove { add: number[]; remove: number[]; newService: number[]; wrk: WrkResult; reloads: number; changeReloads: number }

/** what each of the 50 changes is: one instance without checks, one with a check, three at once (one write) */
type ChangeKind = 'plain' | 'checks' | 'multi';
const KINDS: Record<ChangeKind, { count: number; checks: boolean; suffix: string; says: string }> = {
  plain: { count: 1, checks: false, suffix: '', says: 'one instance, no checks' },
  checks: { count: 1, checks: true, suffix: '_with_checks', says: 'one instance with a passing check (in the same write)' },
  multi: { count: 3, checks: false, suffix: '_3_at_once', says: 'three instances in one write (/v1/txn)' },
};

/** 50 adds and 50 removes under wrk (each one Consul write), then (plain only) 50 new services; all timed from outside */
async function addRemoveRun(dir: string, which: Tool['name'], kind: ChangeKind = 'plain'): Promise<AddRemove> {
  const k = KINDS[kind];
  const consul = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const farm = await backendFarm(60);
  let tool: Tool | undefined;
  try {
    const [p0, p1, p2, ...spare] = farm.ports;
    await consulPut(consul.addr, '/v1/catalog/register', { Node: 'bench-node', Address: '127.0.0.1' });
    await changeInstances(consul.addr, 'set', [p0!, p1!, p2!].map((port, i) => ({ id: `web-${i}`, port })), k.checks);
    tool = which === 'gantry' ? await startGantry(dir, `ar-${kind}`, consul, haproxy) : await startConsulTemplate(dir, `ar-${kind}`, consul, haproxy);
    await waitUntil('web through HAProxy', async () => (await get('127.0.0.1', haproxy.httpPort, 'web.gantry.test')) === 200, { timeoutMs: 60_000 });
    await sleep(1000);
    const backend = 'l7_web.gantry.test';
    const present = new Map([[`web-0`, p0!], [`web-1`, p1!], [`web-2`, p2!]]);
    const expected = (): string => [...present.values()].map((p) => `127.0.0.1:${p}`).sort().join(',');
    const until = async (what: string): Promise<number> => {
      const t0 = nowMs();
      await waitUntil(what, async () => (await servingSet(haproxy, backend)) === expected(), { timeoutMs: 30_000, intervalMs: 10 });
      return nowMs() - t0;
    };
    const reloads0 = await tool.reloads();
    const load = wrkUntilStopped(`http://127.0.0.1:${haproxy.httpPort}/`, 'web.gantry.test');
    await sleep(1000);
    const add: number[] = [];
    const remove: number[] = [];
    for (let i = 0; i < 50; i++) {
      const batch = Array.from({ length: k.count }, (_, j) => ({ id: `web-x${(i % 5) * k.count + j}`, port: spare[(i % 5) * k.count + j]! }));
      const wAdd = Date.now();
      await changeInstances(consul.addr, 'set', batch, k.checks);
      for (const x of batch) present.set(x.id, x.port);
      add.push(await until(`add ${i}`));
      if (process.env.GANTRY_BENCH_KEEP) log(`trace ${which} add ${i} write ${new Date(wAdd).toISOString()} returned +${Date.now() - wAdd - Math.round(add.at(-1)!)} ms, served after ${Math.round(add.at(-1)!)} ms`);
      await sleep(100);
      const wRemove = Date.now();
      await changeInstances(consul.addr, 'delete', batch, k.checks);
      for (const x of batch) present.delete(x.id);
      remove.push(await until(`remove ${i}`));
      if (process.env.GANTRY_BENCH_KEEP) log(`trace ${which} remove ${i} write ${new Date(wRemove).toISOString()} returned +${Date.now() - wRemove - Math.round(remove.at(-1)!)} ms, served after ${Math.round(remove.at(-1)!)} ms`);
      await sleep(100);
    }
    const changeReloads = (await tool.reloads()) - reloads0;
    const wrkResult = await load.stop();
    if (kind !== 'plain') return { add, remove, newService: [], wrk: wrkResult, reloads: changeReloads, changeReloads };
    // new services: first 200 by Host
    const newService: number[] = [];
    for (let i = 0; i < 50; i++) {
      const name = `new${i}`;
      await registerOne(consul.addr, `${name}-1`, name, spare[5 + (i % 40)]!);
      const t0 = nowMs();
      await waitUntil(`${name} served`, async () => (await get('127.0.0.1', haproxy.httpPort, `${name}.gantry.test`)) === 200, { timeoutMs: 30_000, intervalMs: 5 });
      newService.push(nowMs() - t0);
      if (process.env.GANTRY_BENCH_KEEP) log(`trace ${which} new service ${i} served after ${Math.round(newService.at(-1)!)} ms`);
      await sleep(100);
    }
    const reloads = (await tool.reloads()) - reloads0;
    return { add, remove, newService, wrk: wrkResult, reloads, changeReloads };
  } finally {
    await tool?.stop();
    await Promise.allSettled([consul.stop(), haproxy.stop(), farm.engine.stop()]);
  }
}

function wrkUntilStopped(url: string, host: string): { stop(): Promise<WrkResult> } {
  const child = spawn('wrk', ['-t1', '-c16', '-d600s', '-H', `Host: ${host}`, url]);
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<WrkResult>((resolve) => child.on('close', () => resolve(parseWrk(out))));
  return { stop: () => { child.kill('SIGINT'); return done; } };
}

const fmt = (xs: number[]): string => `p50 ${Math.round(percentile(xs, 50))} / p99 ${Math.round(percentile(xs, 99))} / max ${Math.round(Math.max(...xs))} ms`;

async function addRemoveVsConsulTemplate(dir: string): Promise<BenchResult[]> {
  // GANTRY_BENCH_CHANGE_KINDS=plain,checks,multi: which kinds of change (default all three)
  const kinds = (process.env.GANTRY_BENCH_CHANGE_KINDS ?? 'plain,checks,multi').split(',').filter((x): x is ChangeKind => x in KINDS);
  const out: BenchResult[] = [];
  for (const kind of kinds) {
    const sfx = KINDS[kind].suffix;
    const g = await addRemoveRun(dir, 'gantry', kind);
    log(`gantry (${kind}): add ${fmt(g.add)}; remove ${fmt(g.remove)}${g.newService.length ? `; new service ${fmt(g.newService)}` : ''}; failed ${g.wrk.socketErrors + g.wrk.non2xx}/${g.wrk.requests}; reloads ${g.reloads}`);
    const c = await addRemoveRun(dir, 'consul-template', kind);
    log(`consul-template (${kind}): add ${fmt(c.add)}; remove ${fmt(c.remove)}${c.newService.length ? `; new service ${fmt(c.newService)}` : ''}; failed ${c.wrk.socketErrors + c.wrk.non2xx}/${c.wrk.requests}; reloads ${c.reloads}`);
    const how = `each change ${KINDS[kind].says}; Consul write returned → HAProxy show servers state of the backend lists exactly the expected set (running, not in maintenance), polled every 10 ms; wrk -t1 -c16 keep-alive on the service throughout the 100 changes; same engines, same template shape; consul-template v${CT_VERSION} with wait 20ms:200ms and command haproxy -c && master CLI reload; gantry --wait 20ms:200ms; ${TWO_CORES}`;
    const failed = (x: AddRemove): number => x.wrk.socketErrors + x.wrk.non2xx;
    out.push(
      result({ suite: SUITE, metric: `instance_added_to_served_set${sfx}_p99_ms`, value: percentile(g.add, 99), unit: 'ms', n: g.add.length, baseline_metric: `consul_template_instance_added${sfx}_p99_ms`, baseline_value: percentile(c.add, 99), notes: `gantry ${fmt(g.add)}; consul-template ${fmt(c.add)}; target ≤ 100 ms; ${how}` }),
      result({ suite: SUITE, metric: `instance_removed_from_served_set${sfx}_p99_ms`, value: percentile(g.remove, 99), unit: 'ms', n: g.remove.length, baseline_metric: `consul_template_instance_removed${sfx}_p99_ms`, baseline_value: percentile(c.remove, 99), notes: `gantry ${fmt(g.remove)}; consul-template ${fmt(c.remove)}; target ≤ 100 ms; ${how}` }),
      result({ suite: SUITE, metric: `failed_requests_over_100_instance_changes${sfx}`, value: failed(g), unit: 'requests', n: g.wrk.requests, baseline_metric: `consul_template_failed_requests_over_100_instance_changes${sfx}`, baseline_value: failed(c), ratio: null, notes: `gantry ${g.wrk.requests} requests (socket errors ${g.wrk.socketErrors}, non-2xx ${g.wrk.non2xx}), ${g.changeReloads} reloads; consul-template ${c.wrk.requests} requests (socket errors ${c.wrk.socketErrors}, non-2xx ${c.wrk.non2xx}), ${c.changeReloads} reloads; target 0` }),
    );
    if (kind === 'plain') out.push(result({ suite: SUITE, metric: 'new_service_to_first_200_by_host_p99_ms', value: percentile(g.newService, 99), unit: 'ms', n: g.newService.length, baseline_metric: 'consul_template_new_service_first_200_p99_ms', baseline_value: percentile(c.newService, 99), notes: `Consul write returned → first 200 through HAProxy by Host, polled every 5 ms; gantry ${fmt(g.newService)} with --spare-backends 8 (reloads over the 50: ${g.reloads - g.changeReloads}, the pool doubling each time it ran out); consul-template ${fmt(c.newService)} (a reload each: ${c.reloads - c.changeReloads}); target ≤ 150 ms; ${TWO_CORES}` }));
  }
  return out;
}

/** failed requests over the templater's 50 changes, next to as many raw reloads as it did, same pace, same load */
async function changesUnderLoad(dir: string): Promise<BenchResult[]> {
  const consul = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const farm = await backendFarm(8);
  const stop = async (): Promise<void> => { await Promise.allSettled([consul.stop(), haproxy.stop(), farm.engine.stop()]); };
  try {
    const [p0, p1, p2, ...spare] = farm.ports;
    for (const [i, p] of [p0!, p1!, p2!].entries()) await registerOne(consul.addr, `web-${i}`, 'web', p);
    const g = await startGantry(dir, 'load', consul, haproxy, ['--max-reloads', '5']);
    const url = `http://127.0.0.1:${haproxy.httpPort}/`;
    await waitUntil('web through HAProxy', async () => (await get('127.0.0.1', haproxy.httpPort, 'web.gantry.test')) === 200, { timeoutMs: 30_000 });
    const metricsUrl = await g.t.metricsUrl();
    const paceMs = 300;
    const seconds = Math.ceil((50 * paceMs) / 1000) + 4;
    // 25 membership changes and 25 new services (spare backends, a reload when they run out)
    const reloadsBefore = await metric(metricsUrl, 'gantry_templater_reloads_total');
    const runtimeBefore = await metric(metricsUrl, 'gantry_templater_runtime_updates_total', { result: 'ok' });
    const load = wrk(url, 'web.gantry.test', seconds);
    await sleep(1500);
    const present = new Set([0, 1, 2]);
    for (let i = 0; i < 50; i++) {
      if (i % 2 === 0) {
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
    await g.stop();

    // baseline: as many raw reloads through the master CLI as the templater did, spread over the same 50 slots
    const base = wrk(url, 'web.gantry.test', seconds);
    await sleep(1500);
    const every = reloads > 0 ? Math.floor(50 / reloads) : Infinity;
    let done = 0;
    for (let i = 0; i < 50; i++) {
      if (done < reloads && i % every === 0) { await socketCommand(haproxy.masterSocket, 'reload').catch(() => undefined); done++; }
      await sleep(paceMs);
    }
    const raw = await base;
    const failed = withTemplater.socketErrors + withTemplater.non2xx;
    const rawFailed = raw.socketErrors + raw.non2xx;
    log(`under changes: ${withTemplater.requests} requests, ${failed} failed, ${reloads} reloads; ${done} raw reloads: ${raw.requests} requests, ${rawFailed} failed`);
    return [
      result({
        suite: SUITE, metric: 'failed_requests_over_50_changes', value: failed, unit: 'requests', n: withTemplater.requests,
        baseline_metric: `failed_requests_over_${done}_raw_reloads`, baseline_value: rawFailed, ratio: null,
        notes: `wrk -t1 -c16 keep-alive for ${seconds}s; 25 membership changes + 25 new services (${runtime} Runtime API applies, ${reloads} reloads confirmed); change every ${paceMs} ms; socket errors ${withTemplater.socketErrors}, non-2xx ${withTemplater.non2xx}; baseline: the same number of raw master-CLI reloads (${done}) at the same pace under the same load: ${raw.requests} requests, socket errors ${raw.socketErrors}, non-2xx ${raw.non2xx}; ${TWO_CORES}`,
      }),
    ];
  } finally {
    await stop();
  }
}

interface BigRun { newService: number[]; reloadApply: number[]; firstMs: number; newServiceReloads: number }

/** 2,000 × 5: new services → first 200 by Host; reload-path changes → file changed and reload confirmed */
async function bigCatalogRun(dir: string, which: Tool['name']): Promise<BigRun> {
  const consul = await startConsul({ hcl: 'limits { http_max_conns_per_client = 10000 }' });
  const haproxy = await startHAProxy({ config: bootstrap });
  const farm = await backendFarm(1);
  let tool: Tool | undefined;
  try {
    await registerMany(consul.addr, 2000, 5);
    const t0 = nowMs();
    tool = which === 'gantry' ? await startGantry(dir, 'big', consul, haproxy, ['--consul-wait', '15s', '--resync-interval', '0']) : await startConsulTemplate(dir, 'big', consul, haproxy);
    await waitUntil('svc1999 in the config', async () => readFileSync(haproxy.cfgFile, 'utf8').includes('l7_svc1999.gantry.test'), { timeoutMs: 300_000, intervalMs: 50 });
    const firstMs = nowMs() - t0;
    await sleep(2000);
    const reloads0 = await tool.reloads();
    const newService: number[] = [];
    for (let i = 0; i < 10; i++) {
      const name = `extra${i}`;
      await registerOne(consul.addr, `${name}-1`, name, farm.ports[0]!, '127.0.0.1');
      const w0 = nowMs();
      await waitUntil(`${name} served`, async () => (await get('127.0.0.1', haproxy.httpPort, `${name}.gantry.test`)) === 200, { timeoutMs: 60_000, intervalMs: 5 });
      newService.push(nowMs() - w0);
      await sleep(500);
    }
    // a change only a reload applies: gantry — a path route on an existing service; consul-template —
    // every change is one (a new service): Consul write → the file changed and show proc confirms a new worker
    const newServiceReloads = (await tool.reloads()) - reloads0;
    const reloadApply: number[] = [];
    for (let i = 0; i < 5; i++) {
      const changed = fileChangedFrom(haproxy.cfgFile, readFileSync(haproxy.cfgFile, 'utf8'));
      const p0 = await masterProcs(haproxy);
      if (which === 'gantry') await consulPut(consul.addr, '/v1/catalog/register', { Node: 'bench-node', Address: '127.0.0.1', SkipNodeUpdate: true, Service: { ID: `s${i}-0`, Service: `svc${i}`, Address: '10.100.0.1', Port: 8080, Tags: [`gantry.path=/p${i}`] } });
      else await registerOne(consul.addr, `more${i}-1`, `more${i}`, 8080, '10.99.0.1');
      const w0 = nowMs();
      await waitUntil('file changed and reload confirmed', async () => {
        if (!changed()) return false;
        const p = await haproxy.processes().catch(() => undefined);
        return p !== undefined && p.reloads > p0.reloads && p.workers.some((w) => !p0.workers.includes(w));
      }, { timeoutMs: 60_000, intervalMs: 10 });
      reloadApply.push(nowMs() - w0);
      await sleep(1000);
    }
    return { newService, reloadApply, firstMs, newServiceReloads };
  } finally {
    await tool?.stop();
    await Promise.allSettled([consul.stop(), haproxy.stop(), farm.engine.stop()]);
  }
}

async function bigCatalog(dir: string): Promise<BenchResult[]> {
  const g = await bigCatalogRun(dir, 'gantry');
  log(`2000×5 gantry: new service ${fmt(g.newService)}; reload path ${fmt(g.reloadApply)}; first render ${Math.round(g.firstMs)} ms`);
  const c = await bigCatalogRun(dir, 'consul-template');
  log(`2000×5 consul-template: new service ${fmt(c.newService)}; reload ${fmt(c.reloadApply)}; first render ${Math.round(c.firstMs)} ms`);
  const results: BenchResult[] = [
    result({ suite: SUITE, metric: 'new_service_among_2000x5_served_p99_ms', value: percentile(g.newService, 99), unit: 'ms', n: g.newService.length, baseline_metric: 'consul_template_new_service_among_2000x5_p99_ms', baseline_value: percentile(c.newService, 99), notes: `Consul write returned → first 200 through HAProxy by Host (polled every 5 ms); gantry ${fmt(g.newService)} (default spare pool: --spare-backends 8, at least 1 per 100 services (--spare-backends-percent 1): 20 here; ${g.newServiceReloads} reload(s) over the 10); consul-template ${fmt(c.newService)} (render of 2000 services, check, reload: ${c.newServiceReloads} reloads); Consul limits.http_max_conns_per_client raised to 10000 for consul-template's 2000 blocking queries; first full render: gantry ${Math.round(g.firstMs)} ms, consul-template ${Math.round(c.firstMs)} ms; target ≤ 500 ms; ${TWO_CORES}` }),
    result({ suite: SUITE, metric: 'reload_path_apply_2000x5_p50_ms', value: percentile(g.reloadApply, 50), unit: 'ms', n: g.reloadApply.length, baseline_metric: 'consul_template_reload_apply_2000x5_p50_ms', baseline_value: percentile(c.reloadApply, 50), notes: `from outside: Consul write returned → the config file changed and show proc shows a new worker; gantry: a path route added to an existing service (structure changes: render, haproxy -c, write, reload) ${fmt(g.reloadApply)}; consul-template: a new service (its every change is a reload) ${fmt(c.reloadApply)}; ${TWO_CORES}` }),
  ];
  results.push(...await idleRequests(dir));
  return results;
}

/** Consul requests a minute while idle with 2,000 services, next to 20 services */
async function idleRequests(dir: string): Promise<BenchResult[]> {
  const consul = await startConsul();
  const small = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  const haproxySmall = await startHAProxy({ config: bootstrap });
  const tools: Tool[] = [];
  try {
    await registerMany(consul.addr, 2000, 5);
    await registerMany(small.addr, 20, 5);
    const big = await startGantry(dir, 'idle-2000', consul, haproxy, ['--consul-wait', '15s', '--resync-interval', '0']);
    const smallT = await startGantry(dir, 'idle-20', small, haproxySmall, ['--consul-wait', '15s', '--resync-interval', '0']);
    tools.push(big, smallT);
    const applied = (l: Record<string, unknown>): boolean => l.template === 'haproxy' && String(l.msg).startsWith('rendered, checked, written and reloaded');
    await big.t.waitLog('first apply', applied, 120_000);
    await smallT.t.waitLog('first apply (20)', applied, 60_000);
    const bigUrl = await big.t.metricsUrl();
    const smallUrl = await smallT.t.metricsUrl();
    await sleep(2000);
    const b0 = await metric(bigUrl, 'gantry_templater_consul_requests_total');
    const s0 = await metric(smallUrl, 'gantry_templater_consul_requests_total');
    const windowMs = Number(process.env.GANTRY_BENCH_IDLE_S ?? 60) * 1000;
    await sleep(windowMs);
    const b1 = await metric(bigUrl, 'gantry_templater_consul_requests_total');
    const s1 = await metric(smallUrl, 'gantry_templater_consul_requests_total');
    const perMin = (d: number): number => (d * 60_000) / windowMs;
    return [result({
      suite: SUITE, metric: 'consul_requests_per_min_idle_2000_services', value: perMin(b1 - b0), unit: 'requests/min', n: 1,
      baseline_metric: 'consul_requests_per_min_idle_20_services', baseline_value: perMin(s1 - s0),
      notes: `${windowMs / 1000}s idle window, blocking queries with --consul-wait 15s (default 5m: ~0.4/min); counted by the templater's own metric (requests it sent)`,
    })];
  } finally {
    for (const t of tools) await t.stop();
    await Promise.allSettled([consul.stop(), small.stop(), haproxy.stop(), haproxySmall.stop()]);
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
    procs.push(spawnEngine('registrator', process.execPath, [...GANTRY_NODE_FLAGS, join(repoRoot, 'cli', 'bin', 'gantry.js'), 'registrator', '--consul-addr', consul.addr, '--admin-addr', '127.0.0.1:0', '--require-label', `${RUN_LABEL}=${runId}`], { logFile: join(dir, 'registrator.log') }));
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
        notes: `from the Docker start call's return (container running; the call itself took p50 ${Math.round(percentile(startCall, 50))} ms); each container a new service: Docker event → registrator → Consul (registered p50 ${Math.round(percentile(registered, 50))} ms) → templater (a spare backend and the host map through the Runtime API, a reload when the spares run out; hosts file + SIGHUP dnsmasq; name resolves p50 ${Math.round(percentile(resolvedAt, 50))} ms) → HAProxy 200; polled every 5 ms; ${TWO_CORES}`,
      }),
      result({
        suite: SUITE, metric: 'container_start_to_first_200_by_name_p99_ms', value: percentile(viaName, 99), unit: 'ms', n: viaName.length,
        baseline_metric: 'container_start_to_first_200_direct_p99_ms', baseline_value: percentile(direct, 99),
        notes: `target p99 ≤ 150 ms; max ${Math.round(Math.max(...viaName))} ms; registered in Consul p99 ${Math.round(percentile(registered, 99))} ms; name resolves p99 ${Math.round(percentile(resolvedAt, 99))} ms`,
      }),
    ];
  } finally {
    await stop();
  }
}

export async function run(): Promise<BenchResult[]> {
  const dir = tempDir('bench-templater');
  try {
    // GANTRY_BENCH_TEMPLATER=changes,load,catalog,docker runs only those parts
    const only = (process.env.GANTRY_BENCH_TEMPLATER ?? 'changes,load,catalog,docker').split(',');
    const out: BenchResult[] = [];
    if (only.includes('changes')) out.push(...await addRemoveVsConsulTemplate(dir));
    if (only.includes('load')) out.push(...await changesUnderLoad(dir));
    if (only.includes('catalog')) out.push(...await bigCatalog(dir));
    if (only.includes('docker')) out.push(...await containerToFirst200(dir));
    if (process.env.GANTRY_BENCH_KEEP) log(`logs kept in ${dir}`); else removeDir(dir);
    return out;
  } catch (err) {
    log(`failed; logs kept in ${dir}`);
    throw err;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const r of await run()) process.stdout.write(`${JSON.stringify(r)}\n`);
}
