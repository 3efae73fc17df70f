// `npm run bench -- zookeeper`: the Dubbo ↔ Consul bridge (`gantry registrator
// --zookeeper`), measured from outside its process:
//  1. provider node created in ZooKeeper → instance in Consul, p50/p99 over 200
//     (baseline: this process watches the same providers list and registers
//     straight into Consul's catalog when the watch fires);
//  2. instance registered in Consul → provider node seen by a watching ZooKeeper
//     client, p50/p99 over 200 (baseline: this process does a blocking query and
//     creates the node itself when it returns);
//  3. initial sync of 5,000 providers over 500 interfaces (baseline: the same
//     instances straight into Consul through the bridge's catalog sink, in its
//     /v1/txn batches, 4 at once, as the bridge's reconciler batches);
//  4. session expiry (the bridge frozen with SIGSTOP past its session timeout,
//     then resumed: ZooKeeper has expired its session) → every exported node
//     back (baseline: a fresh session of this process creating the same nodes).
// Each figure is printed the moment it is measured (a later part that fails or
// hangs loses none), so run() prints its own lines and hands bench/run.ts
// nothing more. Every part runs its own bridge and stops it, so one part's
// bridge does not load the next part's measurement; a part that fails is
// reported on stderr, the others still run, and the suite fails at the end.
// BENCH_ZK_ONLY=import,export,sync,expiry runs only those parts;
// BENCH_ZK_LOG_LEVEL sets the bridges' log level (default info, as deployed).
import { createConsul, mapLimit, asOwnerId, type ConsulClient } from '@gantry/core';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startZooKeeper } from '../test/harness/engines/zookeeper.ts';
import { connectZk, type TestZkClient } from '../test/harness/engines/zookeeper-client.ts';
import { startGantry, type GantryProcess } from '../test/harness/gantry.ts';
import { encodeNodeName, parseProviderNode } from '../registrator/src/sources/zookeeper/dubbo-url.ts';
import { providerToInstance } from '../registrator/src/sources/zookeeper/mapping.ts';
import { ConsulCatalogSink } from '../registrator/src/sinks/consul-catalog.ts';
import { result, emit, percentile, nowMs, TWO_CORES, type BenchResult } from './lib.ts';

const CHANGES = Number(process.env.BENCH_ZK_CHANGES ?? 200);
const PROVIDERS = Number(process.env.BENCH_ZK_PROVIDERS ?? 5000);
const INTERFACES = Number(process.env.BENCH_ZK_INTERFACES ?? 500);
const EXPORTED = Number(process.env.BENCH_ZK_EXPORTED ?? 200);
const ONLY = (process.env.BENCH_ZK_ONLY ?? '').split(',').filter(Boolean);
const LOG_LEVEL = process.env.BENCH_ZK_LOG_LEVEL ?? 'info';

const node = (iface: string, host: string, port: number): string =>
  encodeNodeName(`dubbo://${host}:${port}/${iface}?anyhost=true&application=bench&dubbo=2.0.2&interface=${iface}&methods=a,b&release=2.7.8&side=provider&timestamp=1600000000000`);

/** resolves with the time at which `pred` holds for a Consul blocking query's body */
async function until(consul: ConsulClient, path: string, pred: (body: unknown) => boolean, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let index: string | undefined;
  for (;;) {
    try {
      const r = await consul.request<unknown>('GET', path, { index, wait: index ? '5s' : undefined, timeoutMs: 30_000 });
      if (pred(r.body)) return nowMs();
      index = r.index;
    } catch (err) {
      if ((err as { code?: string }).code !== 'E_CONSUL_TIMEOUT') throw err; // a loaded Consul: ask again
      index = undefined;
    }
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting on ${path}`);
  }
}
const ports = (body: unknown): number[] => ((body as Array<{ ServicePort: number }> | null) ?? []).map((e) => e.ServicePort);

/** one child watch per path, re-armed on every change; waiters resolve with the time the listing that satisfies them arrived */
class ChildView {
  private names: string[] = [];
  private readonly waiters = new Set<{ pred: (names: string[]) => boolean; resolve: (t: number) => void }>();
  private readonly c: TestZkClient;
  private readonly path: string;
  constructor(c: TestZkClient, path: string) {
    this.c = c;
    this.path = path;
  }
  start(): void {
    const look = (): void => {
      this.c.children(this.path, () => look()).then((names) => { this.names = names; this.check(); }).catch(() => {
        this.c.raw.exists(this.path, () => look(), () => undefined);
      });
    };
    look();
  }
  private check(): void {
    const t = nowMs();
    for (const w of this.waiters) if (w.pred(this.names)) { this.waiters.delete(w); w.resolve(t); }
  }
  waitFor(pred: (names: string[]) => boolean): Promise<number> {
    return new Promise((resolve) => { this.waiters.add({ pred, resolve }); this.check(); });
  }
}


interface Ctx {
  zk: { connectString: string };
  consulAddr: string;
  consul: ConsulClient;
  /** a ZooKeeper client playing the Dubbo providers */
  dubbo: TestZkClient;
  /** starts a bridge stopped when the part ends */
  bridge: (name: string, extra: string[]) => Promise<GantryProcess>;
  /** a ZooKeeper client closed when the part ends */
  client: (opts?: { sessionTimeout?: number }) => Promise<TestZkClient>;
}

/** 1. provider node created in ZooKeeper → instance in Consul */
async function importLatency(c: Ctx): Promise<void> {
  const { dubbo, consul } = c;
  await dubbo.mkdirp('/dubbo/com.bench.Hot/providers');
  const bridgeProc = await c.bridge('imp', ['--zk-export=false']);
  await dubbo.create(`/dubbo/com.bench.Hot/providers/${node('com.bench.Hot', '10.0.0.1', 1)}`);
  await until(consul, '/v1/catalog/service/com-bench-hot', (b) => ports(b).includes(1));
  const viaBridge: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const port = 10_000 + i;
    const t0 = nowMs();
    const seen = until(consul, '/v1/catalog/service/com-bench-hot', (b) => ports(b).includes(port));
    await dubbo.create(`/dubbo/com.bench.Hot/providers/${node('com.bench.Hot', '10.0.0.1', port)}`);
    viaBridge.push((await seen) - t0);
  }
  // baseline: a watch in this process, then a direct catalog register
  await dubbo.mkdirp('/dubbo-base/com.bench.Base/providers');
  const watcher = await c.client();
  const known = new Set<string>();
  const onChange = (): void => {
    watcher.children('/dubbo-base/com.bench.Base/providers', onChange).then(async (names) => {
      for (const n of names) {
        if (known.has(n)) continue;
        known.add(n);
        const port = Number(/%3A(\d+)%2F/.exec(n)?.[1]);
        await consul.request('PUT', '/v1/catalog/register', { body: { Node: 'bench-base', Address: '127.0.0.1', Service: { ID: `b-${port}`, Service: 'bench-base', Address: '10.0.0.1', Port: port } } });
      }
    }).catch(() => undefined);
  };
  onChange();
  const direct: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const port = 10_000 + i;
    const t0 = nowMs();
    const seen = until(consul, '/v1/catalog/service/bench-base', (b) => ports(b).includes(port));
    await dubbo.create(`/dubbo-base/com.bench.Base/providers/${node('com.bench.Base', '10.0.0.1', port)}`);
    direct.push((await seen) - t0);
  }
  if (process.env.BENCH_DEBUG) {
    // where the bridge's time went, from its own debug log (stderr only: no figure comes from it)
    const passes = bridgeProc.logs().filter((l) => l.msg === 'pass timing' && l.reason === 'event');
    const share = (k: string): string => `p50 ${percentile(passes.map((l) => Number(l[k])), 50)} p99 ${percentile(passes.map((l) => Number(l[k])), 99)}`;
    process.stderr.write(`bench zookeeper: import passes ${passes.length}: snapshot ms ${share('snapshotMs')}, apply ms ${share('applyMs')}\n`);
  }
  for (const p of [50, 99]) {
    emit(result({
      suite: 'zookeeper', metric: `zk_node_to_consul_p${p}_ms`, value: percentile(viaBridge, p), unit: 'ms', n: CHANGES,
      baseline_metric: `zk_watch_then_direct_register_p${p}_ms`, baseline_value: percentile(direct, p),
      notes: `provider node created → instance in Consul's catalog (blocking query); target ≤ 100 ms at p99; ${TWO_CORES}`,
    }));
  }
}

/** 2. instance registered in Consul → provider node seen by a watching ZooKeeper client */
async function exportLatency(c: Ctx): Promise<void> {
  const { consul } = c;
  await c.bridge('exp', ['--zk-import=false', '--zk-roots', '/dubbo-exp']);
  const viewer = await c.client();
  const expView = new ChildView(viewer, '/dubbo-exp/com.bench.Exp/providers');
  expView.start();
  const exported: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const port = 20_000 + i;
    const t0 = nowMs();
    const seen = expView.waitFor((names) => names.some((n) => n.includes(`%3A${port}%2F`)));
    await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `e-${port}`, Name: 'exp', Address: '10.0.0.2', Port: port, Tags: ['dubbo.interface=com.bench.Exp'] } });
    exported.push((await seen) - t0);
  }
  // baseline: this process does the blocking query and the create
  const maker = await c.client();
  await maker.mkdirp('/dubbo-exp-base/com.bench.Exp/providers');
  const baseView = new ChildView(viewer, '/dubbo-exp-base/com.bench.Exp/providers');
  baseView.start();
  const directExport: number[] = [];
  let idx: string | undefined = (await consul.request('GET', '/v1/catalog/services')).index;
  for (let i = 0; i < CHANGES; i++) {
    const port = 30_000 + i;
    const t0 = nowMs();
    const seen = baseView.waitFor((names) => names.some((n) => n.includes(`%3A${port}%2F`)));
    await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `x-${port}`, Name: 'expbase', Address: '10.0.0.3', Port: port, Tags: ['base'] } });
    const r = await consul.request('GET', '/v1/catalog/services', { index: idx, wait: '5s' });
    idx = r.index;
    await consul.request('GET', '/v1/health/service/expbase', { query: { passing: true } });
    await maker.create(`/dubbo-exp-base/com.bench.Exp/providers/${node('com.bench.Exp', '10.0.0.3', port)}`);
    directExport.push((await seen) - t0);
  }
  // the registrations are left out of later parts' way
  await Promise.all([...Array.from({ length: CHANGES }, (_, i) => `e-${20_000 + i}`), ...Array.from({ length: CHANGES }, (_, i) => `x-${30_000 + i}`)]
    .map((id) => consul.request('PUT', `/v1/agent/service/deregister/${id}`)));
  for (const p of [50, 99]) {
    emit(result({
      suite: 'zookeeper', metric: `consul_to_zk_node_p${p}_ms`, value: percentile(exported, p), unit: 'ms', n: CHANGES,
      baseline_metric: `blocking_query_then_direct_create_p${p}_ms`, baseline_value: percentile(directExport, p),
      notes: `agent registration → provider node seen by a watching ZooKeeper client; target ≤ 100 ms at p99; ${TWO_CORES}`,
    }));
  }
}

/**
 * The time at which the bridge's node holds `want` services: a blocking query on
 * the (small) service list until every interface is there, only then on the
 * node's full list (5,000 services, ~2 MB a read) — reading the full list after
 * every transaction would load Consul as much as the sync itself.
 */
async function untilSynced(consul: ConsulClient, nodeName: string, names: ReadonlySet<string>, want: number): Promise<number> {
  await until(consul, '/v1/catalog/services', (b) => { const have = Object.keys((b as Record<string, string[]> | null) ?? {}); return [...names].every((n) => have.includes(n)); }, 900_000);
  return until(consul, `/v1/catalog/node-services/${nodeName}`, (b) => ((b as { Services?: unknown[] } | null)?.Services?.length ?? 0) >= want, 900_000);
}

/** 3. initial sync of PROVIDERS over INTERFACES */
async function initialSync(c: Ctx): Promise<void> {
  const { dubbo, consul } = c;
  const per = Math.ceil(PROVIDERS / INTERFACES);
  const items: Array<[string, number]> = [];
  for (let i = 0; i < INTERFACES; i++) for (let j = 0; j < per && items.length < PROVIDERS; j++) items.push([`com.bench.I${i}`, 40_000 + j]);
  const ifaces = [...new Set(items.map(([f]) => f))];
  await mapLimit(ifaces, 32, (f) => dubbo.mkdirp(`/dubbo-big/${f}/providers`));
  await mapLimit(items, 64, ([f, port]) => dubbo.create(`/dubbo-big/${f}/providers/${node(f, '10.1.0.1', port)}`));
  const names = new Set(ifaces.map((f) => f.toLowerCase().replace(/\./g, '-')));
  const t0 = nowMs();
  const wall0 = Date.now();
  const g = await c.bridge('big', ['--zk-export=false', '--zk-roots', '/dubbo-big']);
  const synced = await untilSynced(consul, 'zookeeper-sync-big', names, PROVIDERS);
  if (process.env.BENCH_DEBUG) {
    // where the time went, from the bridge's own log (stderr only: no figure comes from it)
    const at = (pred: (l: Record<string, unknown>) => boolean): string => { const l = g.logs().find(pred); return l ? `${Date.parse(String(l.time)) - wall0} ms` : '-'; };
    process.stderr.write(`bench zookeeper: initial sync shares: session ${at((l) => l.msg === 'zookeeper session established')}, leader ${at((l) => l.msg === 'became leader')}, first register ${at((l) => l.action === 'register')}, last register ${at((l) => l.action === 'register' && String(l.instance).endsWith(':40009::'))}, all seen ${Math.round(synced - t0)} ms\n`);
    for (const l of g.logs().filter((x) => x.msg === 'pass timing' || x.msg === 'zookeeper: full listing')) process.stderr.write(`  ${JSON.stringify(l)}\n`);
  }
  // baseline: the same registrations straight into Consul, batched as the bridge batches: the
  // instances the bridge's rules make of the same node names, written by the same catalog sink
  // (no per-instance check, batchSize a transaction, 4 at once) on a node of their own
  const sink = new ConsulCatalogSink({ consul, node: 'bench-big-base', sourceCheck: false });
  const instances = items.map(([bridged, port]) => {
    const f = bridged.replace('com.bench.I', 'com.bench.B'); // names of their own, so the service list says when they are all there
    const parsed = parseProviderNode(node(f, '10.1.0.1', port));
    if (!parsed.ok) throw new Error(parsed.reason);
    const r = providerToInstance(parsed.url, { owner: asOwnerId('bench-base'), path: `/dubbo-big/${f}/providers`, nameRule: 'interface' });
    if (r.kind !== 'instance') throw new Error(`bench: ${f}:${port} is not an instance`);
    return { action: 'register', instance: r.instance };
  });
  const batches: Array<typeof instances> = [];
  for (let i = 0; i < instances.length; i += sink.batchSize) batches.push(instances.slice(i, i + sink.batchSize));
  // observed the same way as the bridge (the same blocking queries run meanwhile)
  const baseNames = new Set([...names].map((n) => n.replace('com-bench-i', 'com-bench-b')));
  const b0 = nowMs();
  const baseSeen = untilSynced(consul, 'bench-big-base', baseNames, PROVIDERS);
  await mapLimit(batches, 4, (batch) => sink.applyBatch(batch));
  const b1 = await baseSeen;
  emit(result({
    suite: 'zookeeper', metric: 'initial_sync_ms', value: synced - t0, unit: 'ms', n: PROVIDERS,
    baseline_metric: 'direct_txn_batches_ms', baseline_value: b1 - b0,
    notes: `${PROVIDERS} providers over ${INTERFACES} interfaces: bridge start (process spawn, ZooKeeper session, leader lock, listing) → all in Consul; baseline: the same instances written by the same catalog sink in /v1/txn batches (${sink.batchSize} a transaction, 4 at once), without the process start and the listing; bridge log level ${LOG_LEVEL}; target ≤ 10 s; ${TWO_CORES}`,
  }));
}

/** 4. session expiry → every exported node back */
async function sessionExpiry(c: Ctx): Promise<void> {
  const { consul } = c;
  for (let i = 0; i < EXPORTED; i++) {
    await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `s-${i}`, Name: `sx${i % 20}`, Address: '10.0.0.9', Port: 50_000 + i, Tags: [`dubbo.interface=com.bench.S${i % 20}`] } });
  }
  const exp = await c.bridge('sx', ['--zk-import=false', '--zk-roots', '/dubbo-sx', '--zk-session-timeout', '4s']);
  const viewer = await c.client();
  const count = async (): Promise<number> => {
    let n = 0;
    for (let i = 0; i < 20; i++) n += (await viewer.children(`/dubbo-sx/com.bench.S${i}/providers`).catch(() => [])).length;
    return n;
  };
  const pollUntil = async (pred: (n: number) => boolean, ms = 60_000): Promise<number> => {
    const end = Date.now() + ms;
    for (;;) {
      if (pred(await count())) return nowMs();
      if (Date.now() > end) throw new Error('bench: exported nodes never reached the count');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await pollUntil((n) => n === EXPORTED);
  process.kill(exp.proc.pid, 'SIGSTOP');
  try {
    await pollUntil((n) => n === 0, 30_000); // ZooKeeper expired the frozen bridge's session: its nodes are gone
  } finally {
    process.kill(exp.proc.pid, 'SIGCONT');
  }
  const r0 = nowMs();
  const wall0 = Date.now();
  const back = await pollUntil((n) => n === EXPORTED);
  if (process.env.BENCH_DEBUG) {
    for (const l of exp.logs().filter((x) => Date.parse(String(x.time)) >= wall0 - 100 && x.level !== 'debug').slice(0, 30)) process.stderr.write(`  +${Date.parse(String(l.time)) - wall0} ms ${String(l.msg)} ${typeof l.reason === 'string' ? l.reason : ''}\n`);
    process.stderr.write(`  all back +${Math.round(back - r0)} ms\n`);
  }
  // baseline: a fresh session of this process creating the same nodes
  const f0 = nowMs();
  const fresh = await c.client();
  await mapLimit(Array.from({ length: 20 }, (_, i) => i), 20, (i) => fresh.mkdirp(`/dubbo-sx-base/com.bench.S${i}/providers`));
  await mapLimit(Array.from({ length: EXPORTED }, (_, i) => i), 16, (i) => fresh.create(`/dubbo-sx-base/com.bench.S${i % 20}/providers/${node(`com.bench.S${i % 20}`, '10.0.0.9', 50_000 + i)}`, 'ephemeral'));
  const f1 = nowMs();
  emit(result({
    suite: 'zookeeper', metric: 'session_expiry_nodes_back_ms', value: back - r0, unit: 'ms', n: EXPORTED,
    baseline_metric: 'fresh_session_direct_create_ms', baseline_value: f1 - f0,
    notes: `bridge resumed after ZooKeeper expired its session → all ${EXPORTED} exported nodes back (includes noticing the expiry and a new session); target ≤ 2 s after the new session; ${TWO_CORES}`,
  }));
}

const PARTS: Array<[string, (c: Ctx) => Promise<void>]> = [['import', importLatency], ['export', exportLatency], ['sync', initialSync], ['expiry', sessionExpiry]];

/** Prints each figure as it is measured; returns nothing for bench/run.ts to print. */
export async function run(): Promise<BenchResult[]> {
  const [zk, consulEngine] = await Promise.all([startZooKeeper(), startConsul()]);
  const consul = createConsul({ addr: consulEngine.addr });
  const failed: string[] = [];
  const dubbo = await connectZk(zk.connectString, { sessionTimeout: 30_000 });
  try {
    for (const [name, part] of PARTS) {
      if (ONLY.length && !ONLY.includes(name)) continue;
      const procs: GantryProcess[] = [];
      const clients: TestZkClient[] = [];
      const ctx: Ctx = {
        zk, consulAddr: consulEngine.addr, consul, dubbo,
        bridge: async (bridgeName, extra) => {
          const g = await startGantry('registrator', ['--docker=false', '--zookeeper', zk.connectString, '--zk-name', bridgeName, '--log-level', LOG_LEVEL, ...extra], { env: { CONSUL_HTTP_ADDR: consulEngine.addr }, waitHealthy: false });
          procs.push(g);
          return g;
        },
        client: async (opts) => { const cl = await connectZk(zk.connectString, opts); clients.push(cl); return cl; },
      };
      try {
        await part(ctx);
      } catch (err) {
        failed.push(name);
        process.stderr.write(`bench zookeeper: part ${name} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      } finally {
        for (const cl of clients) cl.close();
        await Promise.allSettled(procs.map((p) => { try { process.kill(p.proc.pid, 'SIGCONT'); } catch { /* gone */ } return p.stop(); }));
      }
    }
  } finally {
    dubbo.close();
    consul.close();
    await Promise.allSettled([zk.stop(), consulEngine.stop()]);
  }
  if (failed.length) throw new Error(`bench zookeeper: ${failed.join(', ')} failed (the figures printed above were measured)`);
  return [];
}
