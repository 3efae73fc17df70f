// `npm run bench -- scale` (issue 14's scale figures), each next to a baseline
// measured in the same run:
//   1. templater render + check + apply at 200 / 2,000 / 20,000 services (one
//      instance each): a change only a reload applies (a path route on an existing
//      service, whose instance is registered again at 10.100.0.1: a new address too
//      in 4 of the 5 changes), Consul write → the file changed and a new worker
//      answers the admin socket (the new config serves; the time until the
//      master's `show proc` lists it is printed too), p50 of 5; baseline:
//      `haproxy -c` of the very file the templater wrote plus a master-CLI reload,
//      timed the same ways, after the templater's 5 changes with the templater stopped
//      (the check and reload without Gantry's watch, render,
//      diff, write and the Runtime API work that saves the servers' state before
//      the reload). `haproxy -c` of the same file with and without the check's
//      huge pages, and the cost growth per service between sizes, are printed too;
//      BENCH_SCALE_MIN_SLOTS passes --min-slots to the templater.
//   2. registrator cold start with 300 real containers, and 1,000 / 3,000
//      SIMULATED containers: a proxy in front of the real dockerd answers the list
//      with clones of one real running container (own id, name, SERVICE_NAME and
//      published port) and their inspections with the real one's, rewritten;
//      events and everything else are dockerd's. Baseline: the same number of
//      registrations made by direct agent calls, 16 at a time.
//   3. Consul requests per minute of 1,000 idle config clients, SIMULATED in one
//      process (one Consul connection each); baseline: 1,000 bare blocking-query
//      loops on the same prefix with the same wait, counted in the same window.
// Sizes can be cut with BENCH_SCALE_SERVICES=200,2000, BENCH_SCALE_CONTAINERS=300,1000 (real
// containers up to BENCH_SCALE_REAL_MAX, default 300) and BENCH_SCALE_CLIENTS.
import http from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createConsul, mapLimit, type ConsulClient } from '@gantry/core';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startHAProxy } from '../test/harness/engines/haproxy.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId, dockerSocket } from '../test/harness/engines/docker.ts';
import { startGantry as startGantryProcess } from '../test/harness/gantry.ts';
import { tempDir, removeDir, waitUntil, sleep } from '../test/harness/process.ts';
import { systemBin } from '../test/harness/bins.ts';
import { bootstrap, consulPut, registerMany, benchNodeOf, startGantry, masterProcs } from './templater.ts';
import { idleClients } from './config-client.ts';
import { checkEnv } from '@gantry/templater';
import { result, percentile, nowMs, TWO_CORES, emit, fileChangedFrom, type BenchResult } from './lib.ts';

const SUITE = 'scale';
const log = (line: string): void => { process.stderr.write(`bench scale: ${line}\n`); };
const sizes = (env: string | undefined, dflt: number[]): number[] => (env ? env.split(',').map(Number).filter((n) => n > 0) : dflt);

interface TemplaterScale { services: number; firstMs: number; apply: number[]; direct: number[]; applyProc: number[]; directProc: number[]; checkPlain: number[]; checkHuge: number[] }

/**
 * Since `from`: until `fileChanged` says the config file changed (when given) and a worker that was
 * not running before answers the admin socket (the new config serves: every listener of a worker
 * starts at once), and until the master's show proc lists it (the master answers its CLI only
 * once it has cleaned up after the fork: at 20,000 backends most of a second later). Both polled
 * every 10 ms, side by side.
 */
async function newWorker(h: Awaited<ReturnType<typeof startHAProxy>>, p0: { reloads: number; workers: number[] }, from: number, fileChanged?: () => boolean): Promise<{ serveMs: number; procMs: number }> {
  const deadline = from + 120_000;
  const changed = fileChanged ?? ((): boolean => true);
  const serve = (async (): Promise<number> => {
    while (nowMs() < deadline) {
      if (changed()) {
        const info = await h.runtime('show info').catch(() => '');
        const pid = Number(/^Pid: (\d+)/m.exec(info)?.[1]);
        if (pid > 0 && !p0.workers.includes(pid)) return nowMs() - from;
      }
      await sleep(10);
    }
    throw new Error('bench: no new worker answered the admin socket in 120 s');
  })();
  const listed = (async (): Promise<number> => {
    while (nowMs() < deadline) {
      if (changed()) {
        const p = await h.processes().catch(() => undefined);
        if (p !== undefined && p.reloads > p0.reloads && p.workers.some((w) => !p0.workers.includes(w))) return nowMs() - from;
      }
      await sleep(10);
    }
    throw new Error('bench: show proc listed no new worker in 120 s');
  })();
  const [serveMs, procMs] = await Promise.all([serve, listed]);
  return { serveMs, procMs };
}

async function templaterAt(services: number, minSlots: string | undefined, perNode: number | undefined): Promise<TemplaterScale> {
  const dir = tempDir(`bench-scale-${services}`);
  const consul = await startConsul();
  const haproxy = await startHAProxy({ config: bootstrap });
  let tool: Awaited<ReturnType<typeof startGantry>> | undefined;
  try {
    await registerMany(consul.addr, services, 1, perNode);
    const last = `l7_svc${services - 1}.gantry.test`;
    const t0 = nowMs();
    tool = await startGantry(dir, `scale${services}`, consul, haproxy, ['--consul-wait', '15s', '--resync-interval', '0', ...(minSlots ? ['--min-slots', minSlots] : [])]);
    await waitUntil(`svc${services - 1} in the config`, async () => readFileSync(haproxy.cfgFile, 'utf8').includes(last), { timeoutMs: 600_000, intervalMs: 50 });
    const firstMs = nowMs() - t0;
    await sleep(1000);
    const apply: number[] = [];
    const direct: number[] = [];
    const applyProc: number[] = [];
    const directProc: number[] = [];
    const checkPlain: number[] = [];
    const checkHuge: number[] = [];
    const haproxyBin = systemBin('haproxy');
    for (let i = 0; i < 5; i++) {
      const changed = fileChangedFrom(haproxy.cfgFile, readFileSync(haproxy.cfgFile, 'utf8'));
      const p0 = await masterProcs(haproxy, 300_000);
      await consulPut(consul.addr, '/v1/catalog/register', { Node: benchNodeOf(i, perNode), Address: '127.0.0.1', SkipNodeUpdate: true, Service: { ID: `s${i}-0`, Service: `svc${i}`, Address: '10.100.0.1', Port: 8080, Tags: [`gantry.path=/p${i}`] } });
      const w0 = nowMs();
      const a = await newWorker(haproxy, p0, w0, changed);
      apply.push(a.serveMs);
      applyProc.push(a.procMs);
      await sleep(1000);
    }
    // the baseline after the templater's changes, with the templater stopped: reloads of its own in
    // between would be someone else's to the templater (an owed sync: a full read of the servers,
    // and a full state dump before its next reload), and it would share the CPU with the baseline
    await tool.stop();
    tool = undefined;
    for (let i = 0; i < 5; i++) {
      // the same file checked and reloaded directly, confirmed the same ways
      const q0 = await masterProcs(haproxy, 300_000);
      const d0 = nowMs();
      // (with the environment the templater gives its check: the same work)
      const check = spawnSync(haproxyBin, ['-c', '-q', '-f', haproxy.cfgFile], { encoding: 'utf8', env: checkEnv(process.env) });
      if (check.status !== 0) throw new Error(`bench: haproxy -c refused the templater's file: ${check.stderr}`);
      await haproxy.master('reload');
      const d = await newWorker(haproxy, q0, d0);
      direct.push(d.serveMs);
      directProc.push(d.procMs);
      await sleep(1000);
      // what the huge pages take off a check: the same file checked with glibc's default malloc and with
      // the templater's check environment, one after the other
      const timeCheck = (env: NodeJS.ProcessEnv): number => {
        const c0 = nowMs();
        const c = spawnSync(haproxyBin, ['-c', '-q', '-f', haproxy.cfgFile], { encoding: 'utf8', env });
        if (c.status !== 0) throw new Error(`bench: haproxy -c refused the templater's file: ${c.stderr}`);
        return nowMs() - c0;
      };
      const plainEnv = { ...process.env };
      delete plainEnv.GLIBC_TUNABLES;
      checkPlain.push(timeCheck(plainEnv));
      checkHuge.push(timeCheck(checkEnv(plainEnv)));
    }
    return { services, firstMs, apply, direct, applyProc, directProc, checkPlain, checkHuge };
  } finally {
    await tool?.stop();
    await Promise.allSettled([consul.stop(), haproxy.stop()]);
    if (process.env.GANTRY_BENCH_KEEP) log(`templater at ${services}: logs kept in ${dir}`); else removeDir(dir);
  }
}

/** A proxy in front of dockerd that adds `clones` copies of one real running container. */
async function cloningProxy(templateId: string, clones: number, run: string): Promise<{ socket: string; stop(): Promise<void> }> {
  const dir = tempDir('bench-scale-docker');
  const socket = join(dir, 'docker.sock');
  const cloneId = (i: number): string => createHash('sha256').update(`${run}-${i}`).digest('hex');
  const byId = new Map(Array.from({ length: clones }, (_, i) => [cloneId(i), i]));
  const fetchJson = (path: string): Promise<{ status: number; body: unknown }> => new Promise((resolve, reject) => {
    http.get({ socketPath: dockerSocket, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => { try { resolve({ status: res.statusCode ?? 500, body: JSON.parse(Buffer.concat(chunks).toString()) as unknown }); } catch (err) { reject(err instanceof Error ? err : new Error(String(err))); } });
    }).on('error', reject);
  });
  const hostPort = (i: number): string => String(20000 + i);
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const send = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
    const list = /^\/(?:v[\d.]+\/)?containers\/json(?:\?|$)/.test(url);
    const inspect = /^\/(?:v[\d.]+\/)?containers\/([0-9a-f]{64})\/json(?:\?|$)/.exec(url);
    if (req.method === 'GET' && list) {
      void fetchJson(url).then(({ status, body }) => {
        const real = body as Array<Record<string, unknown>>;
        const tpl = real.find((c) => c.Id === templateId);
        if (status !== 200 || !tpl) { send(status, body); return; }
        const out = real.filter((c) => c.Id !== templateId);
        for (let i = 0; i < clones; i++) {
          out.push({ ...tpl, Id: cloneId(i), Names: [`/${run}-sim${i}`], Ports: [{ IP: '0.0.0.0', PrivatePort: 8080, PublicPort: Number(hostPort(i)), Type: 'tcp' }] });
        }
        send(200, out);
      }, (err: unknown) => send(502, { message: String(err) }));
      return;
    }
    if (req.method === 'GET' && inspect && byId.has(inspect[1]!)) {
      const i = byId.get(inspect[1]!)!;
      void fetchJson(url.replace(inspect[1]!, templateId)).then(({ status, body }) => {
        if (status !== 200) { send(status, body); return; }
        const c = body as { Id: string; Name: string; Config: { Env: string[] }; NetworkSettings: { Ports: Record<string, unknown> } };
        c.Id = cloneId(i);
        c.Name = `/${run}-sim${i}`;
        c.Config.Env = [...c.Config.Env.filter((e) => !e.startsWith('SERVICE_NAME=')), `SERVICE_NAME=sim-${i}`];
        c.NetworkSettings.Ports = { '8080/tcp': [{ HostIp: '0.0.0.0', HostPort: hostPort(i) }] };
        send(200, c);
      }, (err: unknown) => send(502, { message: String(err) }));
      return;
    }
    // everything else (events, info, version, the template's own inspect): dockerd's answer
    const up = http.request({ socketPath: dockerSocket, path: url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      res.flushHeaders();
      ur.pipe(res);
    });
    up.on('error', (err) => { if (!res.headersSent) res.writeHead(502); res.end(String(err)); });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    stop: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { removeDir(dir); resolve(); }); }),
  };
}

/** the registrator's names for an owner, by a blocking catalog query (as a Consul reader would watch) */
async function waitOwned(consul: ConsulClient, owner: string, count: number, timeoutMs: number): Promise<number> {
  const node = (await consul.request<{ Config: { NodeName: string } }>('GET', '/v1/agent/self')).body.Config.NodeName;
  const deadline = Date.now() + timeoutMs;
  let index: string | undefined;
  for (;;) {
    const r = await consul.request<{ Services?: unknown[] } | null>('GET', `/v1/catalog/node-services/${encodeURIComponent(node)}`, {
      query: { filter: `Meta["gantry-owner"] == "${owner}"` }, index, wait: index ? '5s' : undefined, timeoutMs: 30_000,
    });
    if ((r.body?.Services?.length ?? 0) >= count) return nowMs();
    if (Date.now() > deadline) throw new Error(`bench: ${r.body?.Services?.length ?? 0} of ${count} registered after ${timeoutMs} ms`);
    index = r.index;
  }
}

async function registratorColdStart(counts: number[]): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const docker = await ensureDocker();
  const consulEngine = await startConsul();
  const consul = createConsul({ addr: consulEngine.addr });
  const env = { CONSUL_HTTP_ADDR: consulEngine.addr };
  try {
    for (const count of counts) {
      const run = newRunId();
      const owner = `bench-${run}`;
      const real = count <= Number(process.env.BENCH_SCALE_REAL_MAX ?? 300);
      let proxy: Awaited<ReturnType<typeof cloningProxy>> | undefined;
      if (real) {
        for (let i = 0; i < count; i += 10) {
          await Promise.all(Array.from({ length: Math.min(10, count - i) }, (_, k) => runContainer(docker, { runId: run, name: `${run}-c${i + k}`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: `cold-${i + k}` }, labels: { 'gantry.test': run } })));
        }
      } else {
        const tpl = await runContainer(docker, { runId: run, name: `${run}-tpl`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'sim-template' }, labels: { 'gantry.test': run } });
        proxy = await cloningProxy(tpl.id, count, run);
      }
      // baseline: the same number of registrations by direct agent calls, 16 at a time
      const tb = nowMs();
      await mapLimit(Array.from({ length: count }, (_, i) => i), 16, (i) => consul.request('PUT', '/v1/agent/service/register', { body: { ID: `${run}-d${i}`, Name: `d-${i}`, Port: 1, Meta: { 'gantry-owner': `${owner}-direct` } } }));
      const baseline = nowMs() - tb;
      const t0 = nowMs();
      const reg = await startGantryProcess('registrator', ['--owner', owner, '--require-label', `gantry.test=${run}`, '--resync', '10m', '--log-level', 'warn', ...(proxy ? ['--docker-socket', proxy.socket] : [])], { env, waitHealthy: false });
      try {
        const tDone = await waitOwned(consul, owner, count, 300_000);
        out.push(result({
          suite: SUITE, metric: `registrator_cold_start_ms.${count}`, value: tDone - t0, unit: 'ms', n: count,
          baseline_metric: `direct_register_${count}_16_parallel_ms`, baseline_value: baseline,
          notes: `${real ? `${count} real running containers` : `${count} SIMULATED containers (clones of one real container, answered by a proxy in front of the real dockerd: list and inspect rewritten, the rest dockerd's)`}; registrator process start → Consul's catalog holds all ${count} (blocking query); includes node's start; ${TWO_CORES}`,
        }));
        emit(out[out.length - 1]!);
      } finally {
        await reg.stop();
        await proxy?.stop();
        await cleanupContainers(docker, run);
        // this agent is the bench's own: every record goes, a clean agent for the next size
        const left = await consul.request<Record<string, { ID: string }>>('GET', '/v1/agent/services');
        await mapLimit(Object.keys(left.body ?? {}).filter((id) => id !== 'consul'), 16, (id) => consul.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`));
      }
    }
  } finally {
    consul.close();
    await consulEngine.stop();
  }
  return out;
}

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const done = (r: BenchResult): void => { out.push(r); emit(r); };

  const scale: TemplaterScale[] = [];
  // services per Consul node (a host's agent): 100 by default, as registrators on many hosts make
  // them; 0 puts every service on one node, whose every change is a read of the whole node
  const perNodeEnv = Number(process.env.BENCH_SCALE_PER_NODE ?? 100);
  const perNode = perNodeEnv > 0 ? perNodeEnv : undefined;
  const nodesNote = (n: number): string => (perNode ? `${perNode} services to each of ${Math.ceil(n / perNode)} Consul nodes` : 'every service on one Consul node');
  for (const n of sizes(process.env.BENCH_SCALE_SERVICES, [200, 2000, 20_000])) {
    log(`templater at ${n} services`);
    const s = await templaterAt(n, process.env.BENCH_SCALE_MIN_SLOTS, perNode);
    scale.push(s);
    const p50 = percentile(s.apply, 50);
    done(result({
      suite: SUITE, metric: `templater_render_check_apply_ms.${n}`, value: p50, unit: 'ms', n: s.apply.length,
      baseline_metric: `haproxy_check_reload_same_file_ms.${n}`, baseline_value: percentile(s.direct, 50),
      notes: `${n} services × 1 instance, ${nodesNote(n)}; Consul write (a path route on an existing service) → the file changed and a new worker answers the admin socket (the new config serves), p50 of ${s.apply.length} (all: ${s.apply.map(Math.round).join(', ')} ms; until show proc lists it: ${s.applyProc.map(Math.round).join(', ')} ms); baseline: haproxy -c of the same file + master-CLI reload, timed the same ways (all: ${s.direct.map(Math.round).join(', ')} ms; until show proc: ${s.directProc.map(Math.round).join(', ')} ms); HAProxy's master and both checks run with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (as the README says to run it; the next figure shows what it changes); first full render after start ${Math.round(s.firstMs)} ms; target at 20,000 ≤ 2,000 ms; ${TWO_CORES}`,
    }));
    done(result({
      suite: SUITE, metric: `haproxy_check_huge_pages_ms.${n}`, value: percentile(s.checkHuge, 50), unit: 'ms', n: s.checkHuge.length,
      baseline_metric: `haproxy_check_default_malloc_ms.${n}`, baseline_value: percentile(s.checkPlain, 50),
      notes: `haproxy -c -q of the templater's file at ${n} services, p50 of ${s.checkHuge.length}, each pair one after the other: with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (the templater's check environment; all: ${s.checkHuge.map(Math.round).join(', ')} ms) vs glibc's default malloc (all: ${s.checkPlain.map(Math.round).join(', ')} ms)`,
    }));
  }
  for (let i = 1; i < scale.length; i++) {
    const a = scale[i - 1]!;
    const b = scale[i]!;
    const per = (x: TemplaterScale['apply']): number => percentile(x, 50);
    done(result({
      suite: SUITE, metric: `templater_apply_us_per_added_service.${a.services}_to_${b.services}`, value: ((per(b.apply) - per(a.apply)) / (b.services - a.services)) * 1000, unit: 'µs/service', n: b.apply.length,
      baseline_metric: `haproxy_check_reload_us_per_added_service.${a.services}_to_${b.services}`, baseline_value: ((per(b.direct) - per(a.direct)) / (b.services - a.services)) * 1000,
      notes: 'growth of the p50 apply time per service between the two sizes (linear growth: the same figure at every step); baseline: the same growth of the check + reload alone',
    }));
  }

  const counts = sizes(process.env.BENCH_SCALE_CONTAINERS, [300, 1000, 3000]);
  if (counts.length) {
    log('registrator cold start');
    out.push(...await registratorColdStart(counts));
  }

  const clients = Number(process.env.BENCH_SCALE_CLIENTS ?? 1000);
  if (!(clients > 0)) return [];
  log(`${clients} idle config clients`);
  const engine = await startConsul({ hcl: 'limits { http_max_conns_per_client = 10000 }' });
  const consul = createConsul({ addr: engine.addr });
  try {
    const r = await idleClients(engine, consul, clients);
    done({ ...r, suite: SUITE, notes: `SIMULATED in one process (one Consul connection each); ${r.notes}` });
  } finally {
    consul.close();
    await engine.stop();
  }
  // the figures were printed as they came; bench/run.ts prints what run() returns
  return [];
}
