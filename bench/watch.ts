// `npm run bench -- watch`: core's catalog watcher (core/src/consul/) against a
// real Consul, each figure next to a baseline measured in the same run doing
// the same work: a plain per-service blocking-query loop, as consul-template
// does (bench/watch/probe.ts runs either as its own process; it prints a line
// when bench-target's instances change; times and counts are taken here, from
// outside it).
//   1. instance added / removed (one of several, alternately with and without a
//      check) → the change printed by the watcher: p50/p99 over 50 of each, 500 services
//   2. connections held to Consul, requests a minute and requests a change, 500 and
//      2,000 services, while bench-target changes (a counting TCP proxy in front of Consul)
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { result, percentile, nowMs, TWO_CORES, type BenchResult } from './lib.ts';
import { startConsul, type ConsulEngine } from '../test/harness/engines/consul.ts';
import { sleep } from '../test/harness/process.ts';

const SUITE = 'watch';
const CHANGES = 50;
const log = (line: string): void => { process.stderr.write(`bench watch: ${line}\n`); };
const probeFile = fileURLToPath(new URL('./watch/probe.ts', import.meta.url));
type Mode = 'watcher' | 'per-service';

/** a TCP proxy in front of Consul counting connections (open now, most at once) and HTTP requests */
async function countingProxy(port: number): Promise<{ addr: string; requests: number; open: number; maxOpen: number; resetWindow(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const stats = {
    addr: '', requests: 0, open: 0, maxOpen: 0,
    resetWindow() { stats.requests = 0; stats.maxOpen = stats.open; },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
  const server = net.createServer((client) => {
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    const upstream = net.connect({ host: '127.0.0.1', port });
    sockets.add(client); sockets.add(upstream);
    let closed = false;
    const end = (): void => {
      if (closed) return;
      closed = true;
      stats.open--;
      client.destroy(); upstream.destroy();
      sockets.delete(client); sockets.delete(upstream);
    };
    client.on('data', (d: Buffer) => { stats.requests += (d.toString('latin1').match(/^(GET|PUT|POST|DELETE) \//gm) ?? []).length; });
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stats.addr = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return stats;
}

async function consulCall(addr: string, method: string, path: string, body?: unknown): Promise<void> {
  const res = await fetch(`${addr}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`Consul ${method} ${path}: ${res.status} ${text}`);
}

/** n services of one instance, on 4 nodes, every other one with a check; /v1/txn, 64 operations a call */
async function registerMany(addr: string, n: number): Promise<void> {
  const ops: unknown[] = [];
  for (let k = 0; k < 4; k++) ops.push({ Node: { Verb: 'set', Node: { Node: `bench-node-${k}`, Address: `127.0.1.${k + 1}` } } });
  for (let i = 0; i < n; i++) {
    const node = `bench-node-${i % 4}`;
    ops.push({ Service: { Verb: 'set', Node: node, Service: { ID: `svc${i}-1`, Service: `svc${i}`, Port: 10_000 + i, Tags: ['bench'] } } });
    if (i % 2 === 0) ops.push({ Check: { Verb: 'set', Check: { Node: node, CheckID: `check:svc${i}-1`, Name: 'bench', Status: 'passing', ServiceID: `svc${i}-1` } } });
  }
  for (let i = 0; i < ops.length; i += 64) await consulCall(addr, 'PUT', '/v1/txn', ops.slice(i, i + 64));
}

const target = (addr: string, id: string, check: boolean): Promise<void> => consulCall(addr, 'PUT', '/v1/catalog/register', {
  Node: 'bench-node-0', Address: '127.0.1.1', SkipNodeUpdate: true,
  Service: { ID: id, Service: 'bench-target', Port: 9000, Tags: ['bench'] },
  ...(check ? { Check: { CheckID: `check:${id}`, Name: 'bench', ServiceID: id, Status: 'passing' } } : {}),
});
const untarget = (addr: string, id: string): Promise<void> => consulCall(addr, 'PUT', '/v1/catalog/deregister', { Node: 'bench-node-0', ServiceID: id });

interface Probe { child: ChildProcess; ids: Set<string>; changedAt: number; waitFor(pred: (ids: Set<string>) => boolean, what: string): Promise<number>; stop(): Promise<void> }

/** starts the probe process; resolves once it says it is ready */
async function startProbe(mode: Mode, addr: string): Promise<Probe> {
  const child = spawn(process.execPath, [probeFile, mode, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  const probe: Probe = {
    child, ids: new Set(), changedAt: 0,
    waitFor: (pred, what) => new Promise((resolve, reject) => {
      // already true: it became true with the last line (the caller waits for one change at a time)
      if (pred(probe.ids)) { resolve(probe.changedAt); return; }
      const timer = setTimeout(() => { waiters.delete(w); reject(new Error(`${mode}: no ${what} within 30 s`)); }, 30_000);
      const w = (): void => { if (pred(probe.ids)) { clearTimeout(timer); waiters.delete(w); resolve(nowMs()); } };
      waiters.add(w);
    }),
    stop: async () => { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); },
  };
  const waiters = new Set<() => void>();
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => { readyResolve = r; });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = JSON.parse(line) as { ready?: boolean; ids?: string[] };
    if (m.ready) readyResolve();
    if (m.ids) {
      probe.ids = new Set(m.ids);
      probe.changedAt = nowMs();
      for (const w of [...waiters]) w();
    }
  });
  await ready;
  return probe;
}

async function latency(consul: ConsulEngine, mode: Mode): Promise<{ add: number[]; remove: number[] }> {
  const probe = await startProbe(mode, consul.addr);
  const add: number[] = [];
  const remove: number[] = [];
  try {
    await probe.waitFor((ids) => ids.has('anchor'), 'anchor');
    for (let i = 0; i < CHANGES; i++) {
      const id = `t${i}`;
      const check = i % 2 === 0;
      let t0 = nowMs();
      await target(consul.addr, id, check);
      add.push((await probe.waitFor((ids) => ids.has(id), `${id} added`)) - t0);
      t0 = nowMs();
      await untarget(consul.addr, id);
      remove.push((await probe.waitFor((ids) => !ids.has(id), `${id} removed`)) - t0);
    }
  } finally {
    await probe.stop();
  }
  return { add, remove };
}

async function load(consul: ConsulEngine, mode: Mode, windowMs: number): Promise<{ maxOpen: number; perMinute: number; perChange: number }> {
  const proxy = await countingProxy(consul.httpPort);
  const probe = await startProbe(mode, proxy.addr);
  try {
    await sleep(3000); // every loop started
    proxy.resetWindow();
    const start = nowMs();
    let i = 0;
    while (nowMs() - start < windowMs) {
      const id = `load${i++}`;
      await target(consul.addr, id, i % 2 === 0);
      await probe.waitFor((ids) => ids.has(id), `${id} added`);
      await sleep(250);
      await untarget(consul.addr, id);
      await probe.waitFor((ids) => !ids.has(id), `${id} removed`);
      await sleep(250);
    }
    const elapsed = nowMs() - start;
    // each round is two changes (an add, then its removal)
    return { maxOpen: proxy.maxOpen, perMinute: (proxy.requests / elapsed) * 60_000, perChange: proxy.requests / (2 * i) };
  } finally {
    await probe.stop();
    await proxy.close();
  }
}

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const consul = await startConsul({ hcl: 'limits { http_max_conns_per_client = 10000 }' });
  try {
    await registerMany(consul.addr, 500);
    await target(consul.addr, 'anchor', true);
    const lat: Record<Mode, { add: number[]; remove: number[] }> = {
      watcher: await latency(consul, 'watcher'),
      'per-service': await latency(consul, 'per-service'),
    };
    for (const kind of ['add', 'remove'] as const) {
      for (const p of [50, 99]) {
        out.push(result({
          suite: SUITE, metric: `instance ${kind === 'add' ? 'added' : 'removed'} → seen by the watcher, p${p} (500 services)`,
          value: percentile(lat.watcher[kind], p), unit: 'ms', n: CHANGES,
          baseline_metric: `the same, a per-service blocking-query loop (consul-template's way), p${p}`,
          baseline_value: percentile(lat['per-service'][kind], p),
          notes: `one of several instances of bench-target, alternately with and without a check; timed from the write's answer to the probe process's line; ${TWO_CORES}`,
        }));
      }
    }
    for (const n of [500, 2000]) {
      if (n > 500) await registerMany(consul.addr, n);
      const w = await load(consul, 'watcher', 15_000);
      const b = await load(consul, 'per-service', 15_000);
      log(`${n} services: watcher ${JSON.stringify(w)}, per-service ${JSON.stringify(b)}`);
      out.push(result({
        suite: SUITE, metric: `connections held to Consul, ${n} services`, value: w.maxOpen, unit: 'connections', n: 1,
        baseline_metric: 'the same, a per-service blocking-query loop', baseline_value: b.maxOpen,
        notes: `most open at once through a counting proxy over a 15 s window with bench-target changing twice a second; Consul's per-client limit raised for the baseline; ${TWO_CORES}`,
      }));
      out.push(result({
        suite: SUITE, metric: `requests a minute to Consul, ${n} services, bench-target changing`, value: w.perMinute, unit: 'requests/min', n: 1,
        baseline_metric: 'the same, a per-service blocking-query loop', baseline_value: b.perMinute,
        notes: `HTTP requests counted by the proxy over 15 s; each change waits until the probe saw it, then 250 ms, so a slower reader makes fewer changes: see the per-change figure; ${TWO_CORES}`,
      }));
      out.push(result({
        suite: SUITE, metric: `requests to Consul a change, ${n} services`, value: w.perChange, unit: 'requests', n: 1,
        baseline_metric: 'the same, a per-service blocking-query loop', baseline_value: b.perChange,
        notes: `requests counted by the proxy / changes made in the 15 s window (the watcher's: its two blocking queries, the node list, an index probe a node — 5 nodes here —, the changed node's read, a service's checks when newer); ${TWO_CORES}`,
      }));
    }
  } finally {
    await consul.stop();
  }
  return out;
}

