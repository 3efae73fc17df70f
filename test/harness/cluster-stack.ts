// Gantry on a Consul cluster, for the chaos tests and the cluster benchmarks:
// a cluster (test/harness/cluster.ts) of three servers and four agents; three
// agents are "hosts", each with its own `gantry registrator` against its own
// agent; the fourth is an edge node running `gantry templater` with HAProxy.
// Redis with a replica and Sentinel holds the audit trail.
//
// The hosts share the machine's dockerd (one engine per host would cost a
// dockerd and an image copy each): every container carries the label
// gantry.cluster.host=<node> and each host's registrator only sees its own
// (--require-label). Containers are registered with their bridge address
// (--internal), serving HTTP with their own name, so HAProxy reaches them
// without a published port. Host c's agent and registrator run in a network
// namespace of their own, so its link can go down (partition()).
import { join } from 'node:path';
import { mkdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import type Docker from 'dockerode';
import { repoRoot } from './bins.ts';
import { get as httpGet } from '../../templater/test/helpers.ts';
import { GANTRY_NODE_FLAGS } from './gantry.ts';
import { startCluster, type ConsulCluster, type ConsulNode } from './cluster.ts';
import { startRedisSentinel, type RedisSentinelEngine } from './engines/redis-sentinel.ts';
import { startHAProxy, answeringConfig, type HAProxyEngine } from './engines/haproxy.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId, RUN_LABEL } from './engines/docker.ts';
import { spawnEngine, tempDir, removeDir, waitUntil, sleep, type ManagedProcess } from './process.ts';

export const HOST_LABEL = 'gantry.cluster.host';
export const SERVICE = 'web';
export const DOMAIN = 'gantry.test';

/** A `gantry <command>` child that can be SIGKILLed and started again. */
export interface GantryPart {
  readonly name: string;
  /** the admin endpoint of the running process (each start binds a port of its own) */
  readonly adminUrl: string;
  proc: ManagedProcess;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  logs(): Array<Record<string, unknown>>;
  /** sum of a Prometheus metric's samples (labels matched as given) */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  tail(lines?: number): string;
}

/**
 * Starts `gantry <command>` with its admin endpoint on port 0 and reads the port it
 * bound from its log ('admin endpoint listening', an info line: the part must log at
 * info or lower). A port picked beforehand was picked in the harness's network
 * namespace, free there but not necessarily in the part's own (EADDRINUSE once).
 * Each launch (a restart too) binds anew: adminUrl is the current one.
 */
export async function startPart(name: string, command: string, args: string[], o: { dir: string; adminHost?: string; netns?: string; waitHealthy?: boolean }): Promise<GantryPart> {
  const host = o.adminHost ?? '127.0.0.1';
  const logFile = join(o.dir, `${name}.log`);
  const argv = [...GANTRY_NODE_FLAGS, join(repoRoot, 'cli', 'bin', 'gantry.js'), command, '--admin-addr', `${host}:0`, ...args];
  let adminUrl = '';
  const launch = async (): Promise<ManagedProcess> => {
    const from = existsSync(logFile) ? statSync(logFile).size : 0;
    const proc = o.netns
      ? spawnEngine(name, 'ip', ['netns', 'exec', o.netns, process.execPath, ...argv], { logFile })
      : spawnEngine(name, process.execPath, argv, { logFile });
    await waitUntil(`${name} admin`, async () => {
      const url = adminUrlIn(logFile, from);
      if (!url) return false;
      adminUrl = url;
      const res = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
      return o.waitHealthy === false || res.ok;
    }, { proc, timeoutMs: 60_000, intervalMs: 200 }).catch(async (err: unknown) => { await proc.kill(); throw err; });
    return proc;
  };
  const proc = await launch();
  const part: GantryPart = {
    name,
    get adminUrl() { return adminUrl; },
    proc,
    async kill() { await part.proc.kill(); },
    async restart() { part.proc = await launch(); },
    async stop() { await part.proc.stop(5000); },
    logs() {
      if (!existsSync(logFile)) return [];
      const out: Array<Record<string, unknown>> = [];
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { /* partial line */ }
      }
      return out;
    },
    async metric(metric, labels = {}) {
      const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
      }
      return sum;
    },
    tail: (n) => part.proc.tail(n),
  };
  return part;
}

/** the admin URL a part logged after byte `from` of its log, if it did yet */
function adminUrlIn(logFile: string, from: number): string | undefined {
  if (!existsSync(logFile)) return undefined;
  const text = readFileSync(logFile).subarray(from).toString('utf8');
  for (const line of text.split('\n')) {
    if (!line.includes('admin endpoint listening')) continue;
    try {
      const url = (JSON.parse(line) as { url?: unknown }).url;
      if (typeof url === 'string') return url;
    } catch { /* partial line */ }
  }
  return undefined;
}

export interface Host {
  readonly node: ConsulNode;
  readonly registrator: GantryPart;
}

export interface Diff { missing: string[]; orphans: string[]; misplaced: string[] }

export interface ClusterStack {
  readonly runId: string;
  readonly dir: string;
  readonly cluster: ConsulCluster;
  readonly redis: RedisSentinelEngine;
  readonly docker: Docker;
  readonly hosts: Host[];
  /** the agent the templater (and config clients) use */
  readonly edge: ConsulNode;
  readonly haproxy: HAProxyEngine;
  readonly templater: GantryPart;
  readonly auditKey: string;
  /** starts a container on a host; resolves with its name */
  startContainer(host: Host): Promise<string>;
  /** removes it (force: SIGKILL, a crash); with stopTimeoutS, `docker stop -t` first (the stop signal, SIGKILL after that) */
  stopContainer(name: string, o?: { stopTimeoutS?: number }): Promise<void>;
  /** running containers of this stack: name → host node name */
  running(): Promise<Map<string, string>>;
  /** Consul's catalog (through a server) against what runs */
  catalogDiff(): Promise<Diff>;
  /** HAProxy's servers of the web backend against Consul's passing instances */
  haproxyDiff(): Promise<{ missing: string[]; extra: string[] }>;
  /** requests through HAProxy: which instance names answered, how many failed */
  traffic(requests: number): Promise<{ names: Set<string>; failed: number }>;
  /** until catalog and HAProxy equal what runs, for stableMs in a row; resolves with the ms it took */
  waitConverged(what: string, opts?: { timeoutMs?: number; stableMs?: number; haproxy?: boolean }): Promise<number>;
  /** a random start or stop every intervalMs for durationMs, across `hosts` (default all) */
  churn(o: { durationMs: number; intervalMs: number; hosts?: Host[]; min?: number; max?: number; signal?: AbortSignal; stopTimeoutS?: number }): Promise<{ started: number; stopped: number }>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

export interface StackOptions {
  /** registrator flags added for every host */
  registratorArgs?: string[];
  /** run the templater and HAProxy (default true) */
  templater?: boolean;
  /** host c in a namespace of its own, for partition() (default true) */
  partitionable?: boolean;
  /** the Consul address a part is given (default its agent's): e.g. a counting proxy in front of it */
  consulAddrFor?: (part: string, agent: ConsulNode) => Promise<string>;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export async function startClusterStack(opts: StackOptions = {}): Promise<ClusterStack> {
  const runId = newRunId();
  const dir = tempDir(`cluster-stack-${runId}`);
  const stoppers: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const s of stoppers.reverse()) await s().catch(() => undefined);
    removeDir(dir);
  };
  try {
    const docker = await ensureDocker();
    stoppers.push(async () => { await cleanupContainers(docker, runId); });
    const cluster = await startCluster({ clients: 4, partitionable: opts.partitionable === false ? [] : [2] });
    stoppers.push(() => cluster.stop());
    // on the cluster's network, so the partitionable host's registrator reaches it too
    const redis = await startRedisSentinel({ bind: cluster.engineAddress });
    stoppers.push(() => redis.stop());
    await cluster.waitHealthy();
    const auditKey = `gantry:audit:${runId}`;
    const hostNodes = cluster.clients.slice(0, 3);
    const edge = cluster.clients[3]!;
    const consulAddr = (part: string, agent: ConsulNode): Promise<string> => opts.consulAddrFor?.(part, agent) ?? Promise.resolve(agent.httpAddr);
    const hosts: Host[] = await Promise.all(hostNodes.map(async (node) => {
      const name = `registrator-${node.name.split('-').pop()}`;
      const registrator = await startPart(name, 'registrator', [
        '--consul-addr', await consulAddr(name, node),
        '--owner', `registrator@${node.name}`,
        '--require-label', `${HOST_LABEL}=${node.name}`,
        '--internal',
        '--audit-redis', redis.url, '--audit-key', auditKey,
        '--log-level', 'info',
        ...(opts.registratorArgs ?? []),
      ], { dir, ...(node.netns ? { netns: node.netns, adminHost: node.address } : {}) });
      stoppers.push(() => registrator.stop());
      return { node, registrator };
    }));

    let haproxy: HAProxyEngine | undefined;
    let templater: GantryPart | undefined;
    if (opts.templater !== false) {
      haproxy = await startHAProxy({ config: (p) => answeringConfig(p.dir, p.httpPort, { status: 503, body: 'bootstrap' }) });
      stoppers.push(() => haproxy!.stop());
      const tdir = join(dir, 'templater');
      mkdirSync(tdir, { recursive: true });
      templater = await startPart('templater', 'templater', [
        '--consul-addr', await consulAddr('templater', edge),
        '--haproxy-cfg', haproxy.cfgFile,
        '--haproxy-master-socket', haproxy.masterSocket,
        '--haproxy-admin-socket', haproxy.adminSocket,
        '--haproxy-state-file', join(tdir, 'server-state'),
        '--l7-bind', `127.0.0.1:${haproxy.httpPort}`,
        '--vip-pool', '127.0.0.0/30', '--vip-manage=false',
        '--state-dir', tdir,
        '--allow-empty',
        '--wait', '50ms:500ms',
        '--log-level', 'info',
      ], { dir, waitHealthy: false });
      stoppers.push(() => templater!.stop());
    }

    let seq = 0;
    const stack: ClusterStack = {
      runId, dir, cluster, redis, docker, hosts, edge, auditKey,
      haproxy: haproxy as HAProxyEngine,
      templater: templater as GantryPart,
      async startContainer(host) {
        const name = `${runId}-${host.node.name.split('-').pop()}-${++seq}`;
        await runContainer(docker, {
          runId, name, expose: ['8080'],
          env: { SERVICE_NAME: SERVICE, NAME: name },
          labels: { [HOST_LABEL]: host.node.name },
          cmd: ['sh', '-c', 'echo "$NAME" > /www/index.html && exec httpd -f -p 8080 -h /www'],
        });
        return name;
      },
      async stopContainer(name, o = {}) {
        const c = docker.getContainer(name);
        if (o.stopTimeoutS !== undefined) await c.stop({ t: o.stopTimeoutS }).catch(() => undefined); // already stopped or gone: remove says
        await c.remove({ force: true });
      },
      async running() {
        const list = await docker.listContainers({ filters: { label: [`${RUN_LABEL}=${runId}`], status: ['running'] } });
        return new Map(list.map((c) => [c.Names[0]!.replace(/^\//, ''), c.Labels[HOST_LABEL] ?? '']));
      },
      async catalogDiff() {
        const server = await cluster.anyServer();
        const [want, entries] = await Promise.all([
          stack.running(),
          getJson<Array<{ Node: string; ServiceMeta: Record<string, string> }>>(`${server.httpAddr}/v1/catalog/service/${SERVICE}`),
        ]);
        const have = new Map<string, string[]>();
        for (const e of entries) {
          const c = e.ServiceMeta['docker-container'] ?? '';
          have.set(c, [...(have.get(c) ?? []), e.Node]);
        }
        return {
          missing: [...want.keys()].filter((c) => !have.has(c)),
          orphans: [...have.keys()].filter((c) => !want.has(c)),
          misplaced: [...have].filter(([c, nodes]) => want.has(c) && (nodes.length !== 1 || nodes[0] !== want.get(c))).map(([c, nodes]) => `${c}@${nodes.join('+')}`),
        };
      },
      async haproxyDiff() {
        if (!haproxy) throw new Error('stack started without the templater');
        const server = await cluster.anyServer();
        const passing = await getJson<Array<{ Service: { Address: string; Port: number } }>>(`${server.httpAddr}/v1/health/service/${SERVICE}?passing`);
        const want = new Set(passing.map((p) => `${p.Service.Address}:${p.Service.Port}`));
        // every backend: the stack serves one service, and the templater may give it a spare backend of any name
        const state = await haproxy.runtime('show servers state').catch(() => '');
        const served = new Set<string>();
        for (const line of state.split('\n')) {
          const cols = line.trim().split(/\s+/);
          // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state … srv_port (col 18)
          if (cols.length < 19 || !/^\d+$/.test(cols[0]!)) continue;
          const admin = Number(cols[6]);
          if ((admin & 0x1) || (admin & 0x2) || (admin & 0x20)) continue; // maintenance (forced, inherited, resolution)
          served.add(`${cols[4]}:${cols[18]}`);
        }
        return { missing: [...want].filter((x) => !served.has(x)), extra: [...served].filter((x) => !want.has(x)) };
      },
      async traffic(requests) {
        if (!haproxy) throw new Error('stack started without the templater');
        const names = new Set<string>();
        let failed = 0;
        for (let i = 0; i < requests; i++) {
          const r = await httpGet(haproxy.httpPort, `${SERVICE}.${DOMAIN}`).catch(() => undefined);
          if (r?.status === 200) names.add(r.body.trim());
          else failed++;
        }
        return { names, failed };
      },
      async waitConverged(what, o = {}) {
        const t0 = Date.now();
        const withHaproxy = o.haproxy ?? Boolean(haproxy);
        let since = 0;
        let last = '';
        await waitUntil(`${what}: catalog${withHaproxy ? ' and HAProxy' : ''} equal to what runs`, async () => {
          const d = await stack.catalogDiff();
          let ok = !d.missing.length && !d.orphans.length && !d.misplaced.length;
          last = JSON.stringify(d);
          if (ok && withHaproxy) {
            const h = await stack.haproxyDiff();
            ok = !h.missing.length && !h.extra.length;
            last += ` haproxy ${JSON.stringify(h)}`;
          }
          if (!ok) { since = 0; return false; }
          if (!since) since = Date.now();
          return Date.now() - since >= (o.stableMs ?? 2000);
        }, { timeoutMs: o.timeoutMs ?? 120_000, intervalMs: 250 }).catch((err: unknown) => {
          throw new Error(`${String(err)}\nlast difference: ${last}`);
        });
        return since - t0;
      },
      async churn(o) {
        const targets = o.hosts ?? hosts;
        const min = o.min ?? 0;
        const max = o.max ?? 40;
        let started = 0;
        let stopped = 0;
        const end = Date.now() + o.durationMs;
        const mine = new Map<string, Host>();
        for (const [name, node] of await stack.running()) {
          const h = targets.find((x) => x.node.name === node);
          if (h) mine.set(name, h);
        }
        // one change every intervalMs whatever Docker's latency: up to 6 in flight
        const inflight = new Set<Promise<void>>();
        let starting = 0;
        const op = async (): Promise<void> => {
          const stop = mine.size > min && (mine.size + starting >= max || Math.random() < 0.45);
          if (stop) {
            const names = [...mine.keys()];
            const name = names[Math.floor(Math.random() * names.length)]!;
            mine.delete(name);
            stopped++;
            await stack.stopContainer(name, o.stopTimeoutS === undefined ? {} : { stopTimeoutS: o.stopTimeoutS }).catch(() => undefined);
          } else {
            const h = targets[Math.floor(Math.random() * targets.length)]!;
            starting++;
            try {
              mine.set(await stack.startContainer(h), h);
              started++;
            } finally {
              starting--;
            }
          }
        };
        while (Date.now() < end && !o.signal?.aborted) {
          const tick = Date.now();
          if (inflight.size < 6) {
            const p: Promise<void> = op().catch(() => undefined).finally(() => inflight.delete(p));
            inflight.add(p);
          }
          await sleep(Math.max(0, o.intervalMs - (Date.now() - tick)));
        }
        await Promise.allSettled([...inflight]);
        return { started, stopped };
      },
      stop: stopAll,
      tail(lines = 15) {
        return [cluster.tail(lines), ...hosts.map((h) => `--- ${h.registrator.name} ---\n${h.registrator.tail(lines)}`),
          templater ? `--- templater ---\n${templater.tail(lines)}` : '', redis.tail(5)].join('\n');
      },
    };
    return stack;
  } catch (err) {
    await stopAll();
    throw err;
  }
}
