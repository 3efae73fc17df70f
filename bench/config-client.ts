// config-client benchmarks (`npm run bench -- config-client`, or run this file):
// KV put → change event latency, get() against Map.get, heap for 10,000 keys
// of 1 KB, start from a snapshot with Consul down, and what 100 idle clients
// cost Consul. Each figure has a baseline measured in the same run.
import v8 from 'node:v8';
import vm from 'node:vm';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConsul, createLogger, type ConsulClient } from '@gantry/core';
import { ConfigClient } from '@gantry/config-client';
import { startConsul, type ConsulEngine } from '../test/harness/engines/consul.ts';
import { freePort } from '../test/harness/process.ts';
import { emit, nowMs, percentile, result, TWO_CORES, type BenchResult } from './lib.ts';

const SUITE = 'config-client';
const silent = createLogger({ component: 'config-client-bench', level: 'silent' });

/** a full collection, so heapUsed counts live objects only */
function fullGc(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) gc();
}

async function kvTxn(consul: ConsulClient, entries: Array<[string, string]>): Promise<void> {
  for (let i = 0; i < entries.length; i += 64) {
    const ops = entries.slice(i, i + 64).map(([k, v]) => ({ KV: { Verb: 'set', Key: k, Value: Buffer.from(v).toString('base64') } }));
    await consul.request('PUT', '/v1/txn', { body: ops, timeoutMs: 30_000 });
  }
}

async function kvPut(consul: ConsulClient, key: string, value: string): Promise<void> {
  await consul.request('PUT', `/v1/kv/${key}`, { body: value });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** p, or a clear failure after ms (a benchmark never hangs) */
async function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const fail = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`bench ${SUITE}: ${what} within ${ms} ms`)), ms); });
  try {
    return await Promise.race([p, fail]);
  } finally {
    clearTimeout(timer);
  }
}

/** put → change event, against a bare blocking query loop on the same prefix (no decoding, no diff) */
async function putToChange(engine: ConsulEngine, consul: ConsulClient): Promise<BenchResult[]> {
  const N = 500;
  const GAP_MS = 55;
  const prefix = 'bench/latency/';
  await kvTxn(consul, Array.from({ length: 50 }, (_, i) => [`${prefix}key${i}`, `initial-${i}`]));
  const config = await ConfigClient.start({ prefixes: [prefix], consul: { addr: engine.addr }, logger: silent });

  const raw = createConsul({ addr: engine.addr });
  const stop = new AbortController();
  let rawWaiter: (() => void) | undefined;
  // the first index is read before any put: a put before it would be missed
  let index = (await raw.request('GET', `/v1/kv/${prefix}`, { query: { recurse: true } })).index;
  const rawLoop = (async () => {
    while (!stop.signal.aborted) {
      try {
        const res = await raw.request('GET', `/v1/kv/${prefix}`, { query: { recurse: true }, index, wait: '5m', timeoutMs: 330_000, signal: stop.signal });
        if (res.index !== index) rawWaiter?.();
        index = res.index;
      } catch (err) {
        if (stop.signal.aborted) return;
        process.stderr.write(`bench: bare blocking query failed, again: ${String(err)}\n`);
        await sleep(50);
      }
    }
  })();

  const lib: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < N; i++) {
    const key = `key${i % 50}`;
    const value = `v${i}`;
    const t0 = nowMs();
    const gotLib = new Promise<number>((resolve) => {
      const off = config.watch(key, (e) => { if (e.newValue === value) { off(); resolve(nowMs()); } });
    });
    const gotRaw = new Promise<number>((resolve) => { rawWaiter = () => { rawWaiter = undefined; resolve(nowMs()); }; });
    await kvPut(consul, prefix + key, value);
    const [tLib, tRaw] = await deadline(Promise.all([gotLib, gotRaw]), 30_000, `put ${i}: no change event or no bare answer`);
    lib.push(tLib - t0);
    bare.push(tRaw - t0);
    await sleep(GAP_MS);
  }
  stop.abort();
  await rawLoop;
  raw.close();
  await config.close();
  const notes = `${N} sequential KV puts to a 50-key prefix, one every ~${GAP_MS} ms after the previous change arrived (under the default rate limit of 20 blocking queries/s, so it never delays one); time from before the PUT to the change event; baseline: a bare blocking query loop on the same prefix, run at the same time; ${TWO_CORES} (Consul, the load generator and the client)`;
  return [
    result({ suite: SUITE, metric: 'put_to_change_p50_ms', value: percentile(lib, 50), unit: 'ms', n: N, baseline_metric: 'bare_blocking_query_p50_ms', baseline_value: percentile(bare, 50), notes }),
    result({ suite: SUITE, metric: 'put_to_change_p99_ms', value: percentile(lib, 99), unit: 'ms', n: N, baseline_metric: 'bare_blocking_query_p99_ms', baseline_value: percentile(bare, 99), notes: `${notes}; target p99 <= 50 ms` }),
  ];
}

/** get() against a plain Map.get over the same keys, alternating rounds, best of each */
async function getThroughput(engine: ConsulEngine, consul: ConsulClient): Promise<BenchResult> {
  const prefix = 'bench/get/';
  const K = 1024;
  const entries: Array<[string, string]> = Array.from({ length: K }, (_, i) => [`${prefix}group${i % 16}/key${i}`, `value-${i}`]);
  await kvTxn(consul, entries);
  const config = await ConfigClient.start({ prefixes: [prefix], consul: { addr: engine.addr }, logger: silent });
  const keys = entries.map(([k]) => k.slice(prefix.length));
  const map = new Map(entries.map(([k, v]) => [k.slice(prefix.length), v]));
  const OPS = 5_000_000;
  let sink = 0;
  const timeGet = (): number => {
    const t0 = nowMs();
    for (let i = 0; i < OPS; i++) if (config.get(keys[i & (K - 1)]!) !== undefined) sink++;
    return OPS / ((nowMs() - t0) / 1000);
  };
  const timeMap = (): number => {
    const t0 = nowMs();
    for (let i = 0; i < OPS; i++) if (map.get(keys[i & (K - 1)]!) !== undefined) sink++;
    return OPS / ((nowMs() - t0) / 1000);
  };
  let bestGet = 0;
  let bestMap = 0;
  for (let round = 0; round < 5; round++) {
    bestMap = Math.max(bestMap, timeMap());
    bestGet = Math.max(bestGet, timeGet());
  }
  await config.close();
  if (sink !== OPS * 10) throw new Error('get benchmark: a read missed');
  return result({
    suite: SUITE, metric: 'get_ops_per_s', value: bestGet, unit: 'ops/s', n: OPS,
    baseline_metric: 'map_get_ops_per_s', baseline_value: bestMap,
    notes: `config.get() over ${K} keys vs Map.get over the same keys, best of 5 alternating rounds of ${OPS} calls; target ratio >= 0.5; ${TWO_CORES}`,
  });
}

/** heap of a client holding 10,000 keys of 1 KB, against a Map holding the same strings; then starts from its snapshot */
async function heapAndSnapshotStart(engine: ConsulEngine, consul: ConsulClient): Promise<BenchResult[]> {
  const prefix = 'bench/heap/';
  const N = 10_000;
  const body = 'x'.repeat(1024 - 8);
  await kvTxn(consul, Array.from({ length: N }, (_, i) => [`${prefix}svc${i % 100}/key${i}`, `${String(i).padStart(8, '0')}${body}`]));
  const dir = await mkdtemp(join(tmpdir(), 'gantry-bench-'));
  const snapshot = join(dir, 'config.snapshot.json');
  try {
    fullGc();
    const h0 = process.memoryUsage().heapUsed;
    const config = await ConfigClient.start({ prefixes: [prefix], consul: { addr: engine.addr }, snapshot, logger: silent });
    await deadline(new Promise<void>((resolve) => { config.on('snapshot', () => resolve()); }), 60_000, 'no snapshot written');
    fullGc();
    const heapMb = (process.memoryUsage().heapUsed - h0) / 1024 / 1024;
    if (config.size !== N) throw new Error(`heap benchmark: ${config.size} keys`);

    fullGc();
    const b0 = process.memoryUsage().heapUsed;
    const map = new Map<string, string>();
    for (let i = 0; i < N; i++) map.set(`svc${i % 100}/key${i}`, Buffer.from(`${String(i).padStart(8, '0')}${body}`).toString('utf8'));
    fullGc();
    const mapMb = (process.memoryUsage().heapUsed - b0) / 1024 / 1024;
    if (map.size !== N) throw new Error('unreachable');

    const fromConsul: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = nowMs();
      const c = await ConfigClient.start({ prefixes: [prefix], consul: { addr: engine.addr }, logger: silent });
      fromConsul.push(nowMs() - t0);
      await c.close();
    }
    await config.close();

    const down = `http://127.0.0.1:${await freePort()}`;
    const fromSnapshot: number[] = [];
    for (let i = 0; i < 9; i++) {
      const t0 = nowMs();
      const c = await ConfigClient.start({ prefixes: [prefix], consul: { addr: down }, snapshot, logger: silent });
      fromSnapshot.push(nowMs() - t0);
      if (c.source !== 'snapshot' || c.size !== N) throw new Error('snapshot start benchmark: not from the snapshot');
      await c.close();
    }
    return [
      result({
        suite: SUITE, metric: 'heap_10k_keys_1kb_mb', value: heapMb, unit: 'MB', n: N,
        baseline_metric: 'map_of_same_strings_mb', baseline_value: mapMb,
        notes: `heapUsed after full GC, client started with a snapshot file (held after its first write) minus before; baseline: a Map of the same 10,000 distinct 1 KB strings; target <= 40 MB`,
      }),
      result({
        suite: SUITE, metric: 'start_from_snapshot_consul_down_ms', value: percentile(fromSnapshot, 50), unit: 'ms', n: fromSnapshot.length,
        baseline_metric: 'start_from_consul_ms', baseline_value: percentile(fromConsul, 50),
        notes: `ConfigClient.start() until it resolves, median of ${fromSnapshot.length} (baseline: of ${fromConsul.length}), snapshot of 10,000 keys of 1 KB (${Math.round(N * 1.03 / 1024)} MB of JSON), nothing listening at the Consul address; baseline: start from a running Consul with the same keys; target <= 50 ms; ${TWO_CORES}`,
      }),
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** requests per minute that idle clients (100 by default) send, counted at each client's Consul connection */
export async function idleClients(engine: ConsulEngine, consul: ConsulClient, CLIENTS = 100): Promise<BenchResult> {
  const WAIT_S = 10;
  const WINDOW_S = 60;
  const prefix = 'bench/idle/';
  await kvTxn(consul, Array.from({ length: 5 }, (_, i) => [`${prefix}key${i}`, `v${i}`]));
  let requests = 0;
  const clients: ConfigClient[] = [];
  const connections: ConsulClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const real = createConsul({ addr: engine.addr });
    connections.push(real);
    const counting: ConsulClient = { ...real, api: real.api, request: (m, p, o) => { requests++; return real.request(m, p, o); } };
    clients.push(await ConfigClient.start({ prefixes: [prefix], consul: counting, wait: `${WAIT_S}s`, logger: silent }));
  }
  // baseline, in the same window: 100 bare blocking-query loops on the same prefix with the
  // same wait (one connection each, no decoding, no jitter), counted the same way
  const stop = new AbortController();
  let bareRequests = 0;
  const bare = Array.from({ length: CLIENTS }, () => createConsul({ addr: engine.addr }));
  const bareLoops = bare.map(async (c) => {
    let index: string | undefined;
    while (!stop.signal.aborted) {
      try {
        bareRequests++;
        const r = await c.request('GET', `/v1/kv/${prefix}`, { query: { recurse: true }, index, wait: index ? `${WAIT_S}s` : undefined, timeoutMs: (WAIT_S + 5) * 1000, signal: stop.signal });
        index = r.index;
      } catch {
        if (stop.signal.aborted) return;
        await sleep(100);
      }
    }
  });
  await sleep(2000); // every bare loop is in its blocking wait
  const before = requests;
  const bareBefore = bareRequests;
  await sleep(WINDOW_S * 1000);
  const rpm = ((requests - before) / WINDOW_S) * 60;
  const bareRpm = ((bareRequests - bareBefore) / WINDOW_S) * 60;
  stop.abort();
  await Promise.all(bareLoops);
  for (const c of bare) c.close();
  await Promise.all(clients.map((c) => c.close()));
  for (const c of connections) c.close();
  return result({
    suite: SUITE, metric: `idle_${CLIENTS}_clients_requests_per_min`, value: rpm, unit: 'req/min', n: CLIENTS,
    baseline_metric: `bare_blocking_loops_${CLIENTS}_req_min`, baseline_value: bareRpm,
    notes: `${CLIENTS} idle clients, wait=${WAIT_S}s (shortened by up to 1/16 of jitter), counted over the same ${WINDOW_S} s as the baseline: ${CLIENTS} bare blocking-query loops on the same prefix with the same wait, measured (counted the same way); with the default wait of 5m this is ~${Math.round(CLIENTS * 60 / 300 * 1.03)} req/min for ${CLIENTS} clients`,
  });
}

export async function run(): Promise<BenchResult[]> {
  const engine = await startConsul();
  const consul = createConsul({ addr: engine.addr });
  try {
    const out: BenchResult[] = [];
    out.push(...await putToChange(engine, consul));
    out.push(await getThroughput(engine, consul));
    out.push(...await heapAndSnapshotStart(engine, consul));
    out.push(await idleClients(engine, consul));
    return out;
  } finally {
    consul.close();
    await engine.stop();
  }
}

if (import.meta.main) {
  for (const r of await run()) emit(r);
}
