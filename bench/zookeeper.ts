// `npm run bench -- zookeeper`: the Dubbo ↔ Consul bridge (`gantry registrator
// --zookeeper`), measured from outside its process:
//  1. provider node created in ZooKeeper → instance in Consul, p50/p99 over 200
//     (baseline: this process watches the same providers list and registers
//     straight into Consul's catalog when the watch fires);
//  2. instance registered in Consul → provider node seen by a watching ZooKeeper
//     client, p50/p99 over 200 (baseline: this process does a blocking query and
//     creates the node itself when it returns);
//  3. initial sync of 5,000 providers over 500 interfaces (baseline: the same
//     registrations straight into Consul, in /v1/txn batches of 32, 4 at once,
//     as the bridge batches);
//  4. session expiry (the bridge frozen with SIGSTOP past its session timeout,
//     then resumed: ZooKeeper has expired its session) → every exported node
//     back (baseline: a fresh session of this process creating the same nodes).
import { createConsul, mapLimit, type ConsulClient } from '@gantry/core';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startZooKeeper } from '../test/harness/engines/zookeeper.ts';
import { connectZk, type TestZkClient } from '../test/harness/engines/zookeeper-client.ts';
import { startGantry, type GantryProcess } from '../test/harness/gantry.ts';
import { encodeNodeName } from '../registrator/src/sources/zookeeper/dubbo-url.ts';
import { result, percentile, nowMs, TWO_CORES, type BenchResult } from './lib.ts';

const CHANGES = Number(process.env.BENCH_ZK_CHANGES ?? 200);
const PROVIDERS = Number(process.env.BENCH_ZK_PROVIDERS ?? 5000);
const INTERFACES = Number(process.env.BENCH_ZK_INTERFACES ?? 500);
const EXPORTED = Number(process.env.BENCH_ZK_EXPORTED ?? 200);

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

export async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const [zk, consulEngine] = await Promise.all([startZooKeeper(), startConsul()]);
  const consul = createConsul({ addr: consulEngine.addr });
  const procs: GantryProcess[] = [];
  const clients: TestZkClient[] = [];
  const bridge = async (name: string, extra: string[]): Promise<GantryProcess> => {
    const g = await startGantry('registrator', ['--docker=false', '--zookeeper', zk.connectString, '--zk-name', name, '--log-level', 'warn', ...extra], { env: { CONSUL_HTTP_ADDR: consulEngine.addr }, waitHealthy: false });
    procs.push(g);
    return g;
  };
  try {
    const dubbo = await connectZk(zk.connectString, { sessionTimeout: 30_000 });
    clients.push(dubbo);

    // 1. ZooKeeper → Consul
    await dubbo.mkdirp('/dubbo/com.bench.Hot/providers');
    await bridge('imp', ['--zk-export=false']);
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
    const watcher = await connectZk(zk.connectString);
    clients.push(watcher);
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
    for (const p of [50, 99]) {
      out.push(result({
        suite: 'zookeeper', metric: `zk_node_to_consul_p${p}_ms`, value: percentile(viaBridge, p), unit: 'ms', n: CHANGES,
        baseline_metric: `zk_watch_then_direct_register_p${p}_ms`, baseline_value: percentile(direct, p),
        notes: `provider node created → instance in Consul's catalog (blocking query); target ≤ 100 ms at p99; ${TWO_CORES}`,
      }));
    }

    // 2. Consul → ZooKeeper
    await bridge('exp', ['--zk-import=false', '--zk-roots', '/dubbo-exp']);
    const viewer = await connectZk(zk.connectString);
    clients.push(viewer);
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
    const maker = await connectZk(zk.connectString);
    clients.push(maker);
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
    for (const p of [50, 99]) {
      out.push(result({
        suite: 'zookeeper', metric: `consul_to_zk_node_p${p}_ms`, value: percentile(exported, p), unit: 'ms', n: CHANGES,
        baseline_metric: `blocking_query_then_direct_create_p${p}_ms`, baseline_value: percentile(directExport, p),
        notes: `agent registration → provider node seen by a watching ZooKeeper client; target ≤ 100 ms at p99; ${TWO_CORES}`,
      }));
    }

    // 3. initial sync of PROVIDERS over INTERFACES
    const per = Math.ceil(PROVIDERS / INTERFACES);
    const items: Array<[string, number]> = [];
    for (let i = 0; i < INTERFACES; i++) for (let j = 0; j < per && items.length < PROVIDERS; j++) items.push([`com.bench.I${i}`, 40_000 + j]);
    await mapLimit([...new Set(items.map(([f]) => f))], 32, (f) => dubbo.mkdirp(`/dubbo-big/${f}/providers`));
    await mapLimit(items, 64, ([f, port]) => dubbo.create(`/dubbo-big/${f}/providers/${node(f, '10.1.0.1', port)}`));
    const t0 = nowMs();
    await bridge('big', ['--zk-export=false', '--zk-roots', '/dubbo-big']);
    const synced = await until(consul, '/v1/catalog/node-services/zookeeper-sync-big', (b) => ((b as { Services?: unknown[] } | null)?.Services?.length ?? 0) >= PROVIDERS, 900_000);
    // baseline: the same registrations straight into Consul, batched as the bridge batches
    const ops = items.map(([f, port]) => ({ f, port }));
    const batches: Array<typeof ops> = [];
    for (let i = 0; i < ops.length; i += 32) batches.push(ops.slice(i, i + 32));
    const b0 = nowMs();
    await consul.request('PUT', '/v1/catalog/register', { body: { Node: 'bench-big-base', Address: '127.0.0.1' } });
    await mapLimit(batches, 4, (batch) => consul.request('PUT', '/v1/txn', {
      body: batch.flatMap(({ f, port }) => {
        const id = `dubbo:${f}:${port}`;
        return [
          { Service: { Verb: 'set', Node: 'bench-big-base', Service: { ID: id, Service: f.toLowerCase().replace(/\./g, '-'), Address: '10.1.0.1', Port: port, Meta: { 'gantry-owner': 'base' } } } },
          { Check: { Verb: 'set', Check: { Node: 'bench-big-base', CheckID: `gantry:${id}`, Name: 'base', ServiceID: id, Status: 'passing' } } },
        ];
      }),
    }));
    const b1 = nowMs();
    out.push(result({
      suite: 'zookeeper', metric: 'initial_sync_ms', value: synced - t0, unit: 'ms', n: PROVIDERS,
      baseline_metric: 'direct_txn_batches_ms', baseline_value: b1 - b0,
      notes: `${PROVIDERS} providers over ${INTERFACES} interfaces: bridge start (process spawn, ZooKeeper session, leader lock, listing) → all in Consul; target ≤ 10 s; ${TWO_CORES}`,
    }));

    // 4. session expiry → every exported node back
    for (let i = 0; i < EXPORTED; i++) {
      await consul.request('PUT', '/v1/agent/service/register', { body: { ID: `s-${i}`, Name: `sx${i % 20}`, Address: '10.0.0.9', Port: 50_000 + i, Tags: [`dubbo.interface=com.bench.S${i % 20}`] } });
    }
    const exp = await bridge('sx', ['--zk-import=false', '--zk-roots', '/dubbo-sx', '--zk-session-timeout', '4s']);
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
    await pollUntil((n) => n === 0, 30_000); // ZooKeeper expired the frozen bridge's session: its nodes are gone
    const r0 = nowMs();
    process.kill(exp.proc.pid, 'SIGCONT');
    const back = await pollUntil((n) => n === EXPORTED);
    // baseline: a fresh session of this process creating the same nodes
    const f0 = nowMs();
    const fresh = await connectZk(zk.connectString);
    clients.push(fresh);
    await mapLimit(Array.from({ length: 20 }, (_, i) => i), 20, (i) => fresh.mkdirp(`/dubbo-sx-base/com.bench.S${i}/providers`));
    await mapLimit(Array.from({ length: EXPORTED }, (_, i) => i), 16, (i) => fresh.create(`/dubbo-sx-base/com.bench.S${i % 20}/providers/${node(`com.bench.S${i % 20}`, '10.0.0.9', 50_000 + i)}`, 'ephemeral'));
    const f1 = nowMs();
    out.push(result({
      suite: 'zookeeper', metric: 'session_expiry_nodes_back_ms', value: back - r0, unit: 'ms', n: EXPORTED,
      baseline_metric: 'fresh_session_direct_create_ms', baseline_value: f1 - f0,
      notes: `bridge resumed after ZooKeeper expired its session → all ${EXPORTED} exported nodes back (includes noticing the expiry and a new session); target ≤ 2 s after the new session; ${TWO_CORES}`,
    }));
  } finally {
    for (const c of clients) c.close();
    await Promise.allSettled(procs.map((p) => { try { process.kill(p.proc.pid, 'SIGCONT'); } catch { /* gone */ } return p.stop(); }));
    consul.close();
    await Promise.allSettled([zk.stop(), consulEngine.stop()]);
  }
  return out;
}
