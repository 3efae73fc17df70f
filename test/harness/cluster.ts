// A real Consul cluster on one machine, shared by the cluster tests and
// benchmarks: three servers and N client agents, each client standing for a
// "host" with its own node name, node ID and address. Every node runs on
// Consul's default ports on an address of its own:
//  - by default 127.0.M.x, with M picked at random per cluster (and checked
//    free), so clusters of concurrent test files and other tests' dev agents
//    on 127.0.0.1 never meet;
//  - with `partitionable` hosts, every address lives on an interface of the
//    cluster's own (a portless bridge, 10.252.M.x/32; nothing routes there) and
//    each partitionable host's agent runs in a network namespace joined by a
//    veth pair, so `partition()` can take its link down and `heal()` bring it
//    back (127/8 cannot be routed into a namespace, hence that interface).
// stop() leaves nothing: processes killed, data dirs, namespaces, veths and
// the cluster's interface removed.
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomInt } from 'node:crypto';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { consulBin } from './bins.ts';
import { createLegacyVm, type LegacyVm } from './netns.ts';
import { spawnEngine, tempDir, removeDir, waitUntil, sleep, type ManagedProcess } from './process.ts';

const run = promisify(execFile);
const ip = async (...args: string[]): Promise<string> => (await run('ip', args)).stdout;

/** Consul's default ports, each node on its own address */
export const CONSUL_PORTS = { server: 8300, serfLan: 8301, serfWan: 8302, http: 8500 } as const;

export interface ConsulNode {
  readonly name: string;
  readonly role: 'server' | 'client';
  /** the address it binds and advertises */
  readonly address: string;
  /** http://address:8500 */
  readonly httpAddr: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** the namespace it runs in (partitionable hosts only) */
  readonly netns: string | undefined;
  proc: ManagedProcess;
  running(): boolean;
  /** SIGKILL, as a crash would */
  kill(): Promise<void>;
  /** start again; `empty` wipes its data dir first (services and checks it held are gone) */
  restart(opts?: { empty?: boolean }): Promise<void>;
  /** SIGSTOP / SIGCONT: frozen, as a stalled VM */
  freeze(): void;
  thaw(): void;
  tail(lines?: number): string;
}

export interface ConsulCluster {
  readonly id: string;
  readonly servers: ConsulNode[];
  /** one client agent per host */
  readonly clients: ConsulNode[];
  /** every address the cluster uses */
  readonly addresses: string[];
  /** an address of the cluster's network for other engines (Redis …), reachable from every host, partitionable ones too */
  readonly engineAddress: string;
  /** what stop() removes: its directory, network namespaces and links */
  readonly dir: string;
  readonly netns: string[];
  readonly links: string[];
  /** the current leader (waits for one) */
  leader(timeoutMs?: number): Promise<ConsulNode>;
  /** a server that answers (not frozen or killed): for reads of the catalog */
  anyServer(): Promise<ConsulNode>;
  /** members alive as every node sees it, and a leader */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** a partitionable host's link down (its agent can reach nothing, nothing reaches it) */
  partition(host: ConsulNode): Promise<void>;
  heal(host: ConsulNode): Promise<void>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

export interface ClusterOptions {
  /** client agents ("hosts"), default 3 */
  clients?: number;
  /** indexes of clients whose agent runs in its own namespace (see partition()) */
  partitionable?: number[];
  /** extra HCL for every node */
  hcl?: string;
}

/** a deterministic UUID for a node name: a host keeps its node ID across an empty restart */
function nodeId(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** true when nothing listens on address:port (TCP) */
function portFree(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, address, () => srv.close(() => resolve(true)));
  });
}

async function pickLoopbackBlock(): Promise<number> {
  const lo = await ip('-o', '-4', 'addr', 'show');
  for (let i = 0; i < 40; i++) {
    const m = randomInt(2, 254);
    if (lo.includes(` 127.0.${m}.`)) continue;
    const probe = await Promise.all([`127.0.${m}.11`, `127.0.${m}.21`].flatMap((a) => [portFree(a, CONSUL_PORTS.http), portFree(a, CONSUL_PORTS.serfLan)]));
    if (probe.every(Boolean)) return m;
  }
  throw new Error('cluster: no free 127.0.M.0/24 block for the Consul cluster');
}

async function pickBridgeBlock(): Promise<number> {
  const used = await ip('-o', '-4', 'addr', 'show');
  for (let i = 0; i < 40; i++) {
    const m = randomInt(1, 255);
    if (!used.includes(` 10.252.${m}.`)) return m;
  }
  throw new Error('cluster: no free 10.252.M.0/24 block for the Consul cluster');
}

export async function startCluster(opts: ClusterOptions = {}): Promise<ConsulCluster> {
  const nClients = opts.clients ?? 3;
  const partitionable = new Set(opts.partitionable ?? []);
  const bridged = partitionable.size > 0;
  const block = bridged ? await pickBridgeBlock() : await pickLoopbackBlock();
  const id = `gc${block}x${randomInt(0, 1e6).toString(36)}`;
  const dir = tempDir(`cluster-${id}`);
  const prefix = bridged ? `10.252.${block}.` : `127.0.${block}.`;
  const ifName = `gcl${block}${id.slice(-3)}`.slice(0, 15);
  const vms = new Map<number, LegacyVm>();
  const nodes: ConsulNode[] = [];
  const cleanupNet = async (): Promise<void> => {
    for (const vm of vms.values()) await vm.destroy();
    if (bridged) await ip('link', 'del', ifName).catch(() => undefined);
  };
  try {
    if (bridged) {
      await ip('link', 'add', ifName, 'type', 'bridge'); // a portless bridge: no dummy module in every kernel
      await ip('link', 'set', ifName, 'up');
    }
    const serverAddrs = [11, 12, 13].map((n) => `${prefix}${n}`);
    for (const a of [...serverAddrs, `${prefix}5`]) if (bridged) await ip('addr', 'add', `${a}/32`, 'dev', ifName);
    for (let i = 0; i < 3; i++) nodes.push(makeNode({ role: 'server', name: `${id}-server-${i + 1}`, address: serverAddrs[i]!, join: serverAddrs, dir, hcl: opts.hcl }));
    for (let i = 0; i < nClients; i++) {
      const name = `${id}-host-${String.fromCharCode(97 + i)}`;
      let address = `${prefix}${21 + i}`;
      let netns: string | undefined;
      if (partitionable.has(i)) {
        const vm = await createLegacyVm();
        vms.set(i, vm);
        await vm.addRoute(`10.252.${block}.0/24`);
        address = vm.vmAddr;
        netns = vm.name;
      } else if (bridged) {
        await ip('addr', 'add', `${address}/32`, 'dev', ifName);
      }
      nodes.push(makeNode({ role: 'client', name, address, join: serverAddrs, dir, hcl: opts.hcl, netns }));
    }
    await Promise.all(nodes.map((n) => n.restart()));
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.proc?.kill()));
    await cleanupNet();
    removeDir(dir);
    throw err;
  }
  const servers = nodes.filter((n) => n.role === 'server');
  const clients = nodes.filter((n) => n.role === 'client');
  const byAddress = new Map(nodes.map((n) => [n.address, n]));

  const cluster: ConsulCluster = {
    id,
    servers,
    clients,
    addresses: nodes.map((n) => n.address),
    engineAddress: `${prefix}5`,
    dir,
    netns: [...vms.values()].map((v) => v.name),
    links: [...(bridged ? [ifName] : []), ...[...vms.values()].map((v) => v.hostIf)],
    async anyServer() {
      return waitUntil('a Consul server that answers', async () => {
        for (const s of servers) {
          if (!s.running()) continue;
          const res = await fetch(`${s.httpAddr}/v1/status/leader`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
          if (res?.ok) return s;
        }
        return undefined;
      }, { timeoutMs: 30_000, intervalMs: 200 });
    },
    async leader(timeoutMs = 60_000) {
      return waitUntil('a Consul leader', async () => {
        for (const s of servers) {
          if (!s.running()) continue;
          const res = await fetch(`${s.httpAddr}/v1/status/leader`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
          if (!res?.ok) continue;
          const leader = ((await res.json()) as string).replace(/:\d+$/, '');
          const node = byAddress.get(leader);
          if (node?.running()) return node;
        }
        return undefined;
      }, { timeoutMs, intervalMs: 200 });
    },
    async waitHealthy(timeoutMs = 90_000) {
      await cluster.leader(timeoutMs);
      await waitUntil(`cluster ${id}: every member alive as each node sees it`, async () => {
        for (const n of nodes) {
          const res = await fetch(`${n.httpAddr}/v1/agent/members`, { signal: AbortSignal.timeout(2000) });
          const members = (await res.json()) as Array<{ Name: string; Status: number }>;
          const alive = new Set(members.filter((m) => m.Status === 1).map((m) => m.Name));
          if (!nodes.every((o) => alive.has(o.name))) return false;
          // every client is in the catalog (its anti-entropy reached the leader)
        }
        const s = servers.find((x) => x.running())!;
        const res = await fetch(`${s.httpAddr}/v1/catalog/nodes`, { signal: AbortSignal.timeout(2000) });
        const names = new Set(((await res.json()) as Array<{ Node: string }>).map((x) => x.Node));
        return nodes.every((n) => names.has(n.name));
      }, { timeoutMs, intervalMs: 300 });
    },
    async partition(host) {
      const vm = vms.get(clients.indexOf(host));
      if (!vm) throw new Error(`cluster: ${host.name} is not partitionable (start the cluster with partitionable: [index])`);
      await ip('-n', vm.name, 'link', 'set', vm.vmIf, 'down');
    },
    async heal(host) {
      const vm = vms.get(clients.indexOf(host));
      if (!vm) throw new Error(`cluster: ${host.name} is not partitionable`);
      await ip('-n', vm.name, 'link', 'set', vm.vmIf, 'up');
      await vm.addRoute(`10.252.${block}.0/24`); // the route went with the link
    },
    async stop() {
      for (const n of nodes) n.thaw();
      await Promise.allSettled(nodes.map((n) => n.proc.stop(3000)));
      await cleanupNet();
      removeDir(dir);
    },
    tail(lines = 15) {
      return nodes.map((n) => `--- ${n.name} (${n.address}) ---\n${n.tail(lines)}`).join('\n');
    },
  };
  return cluster;
}

interface NodeSpec {
  role: 'server' | 'client';
  name: string;
  address: string;
  join: string[];
  dir: string;
  hcl: string | undefined;
  netns?: string | undefined;
}

function makeNode(spec: NodeSpec): ConsulNode {
  const home = join(spec.dir, spec.name);
  const dataDir = join(home, 'data');
  const logFile = join(home, 'consul.log');
  const httpAddr = `http://${spec.address}:${CONSUL_PORTS.http}`;
  mkdirSync(home, { recursive: true });
  const config = {
    node_name: spec.name,
    node_id: nodeId(spec.name),
    datacenter: 'dc1',
    data_dir: dataDir,
    bind_addr: spec.address,
    client_addr: spec.address,
    advertise_addr: spec.address,
    retry_join: spec.join.filter((a) => a !== spec.address),
    retry_interval: '1s',
    server: spec.role === 'server',
    ...(spec.role === 'server' ? { bootstrap_expect: 3 } : {}),
    ports: { dns: -1, grpc: -1, grpc_tls: -1 },
    performance: { raft_multiplier: 1 },
    disable_update_check: true,
    log_level: 'info',
    leave_on_terminate: false,
    enable_local_script_checks: false,
  };
  const configFile = join(home, 'config.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const args = ['agent', '-config-file', configFile, ...(spec.hcl ? ['-hcl', spec.hcl] : [])];
  const bin = consulBin();
  let frozen = false;
  const node: ConsulNode = {
    name: spec.name,
    role: spec.role,
    address: spec.address,
    httpAddr,
    dataDir,
    logFile,
    netns: spec.netns,
    proc: undefined as unknown as ManagedProcess,
    running: () => node.proc !== undefined && !node.proc.exited() && !frozen,
    async kill() {
      frozen = false;
      await node.proc.kill();
    },
    async restart(o = {}) {
      if (node.proc && !node.proc.exited()) await node.proc.stop(3000);
      if (o.empty) rmSync(dataDir, { recursive: true, force: true });
      frozen = false;
      const proc = spec.netns
        ? spawnEngine(`consul ${spec.name}`, 'ip', ['netns', 'exec', spec.netns, bin, ...args], { logFile, cwd: home })
        : spawnEngine(`consul ${spec.name}`, bin, args, { logFile, cwd: home });
      node.proc = proc;
      // the agent answers on HTTP (a leader may not be elected yet)
      await waitUntil(`consul ${spec.name}`, async () => {
        const res = await fetch(`${httpAddr}/v1/agent/self`, { signal: AbortSignal.timeout(1000) });
        return res.ok;
      }, { proc, timeoutMs: 30_000, intervalMs: 150 }).catch(async (err: unknown) => { await proc.kill(); throw err; });
    },
    freeze() {
      if (!node.proc || node.proc.exited()) return;
      frozen = true;
      try { process.kill(-node.proc.pid, 'SIGSTOP'); } catch { /* gone */ }
    },
    thaw() {
      if (!node.proc || node.proc.exited()) return;
      frozen = false;
      try { process.kill(-node.proc.pid, 'SIGCONT'); } catch { /* gone */ }
    },
    tail: (n) => node.proc?.tail(n) ?? '',
  };
  return node;
}

/** Waits until `probe` holds for `stableMs` in a row (an end state, not a passing moment). */
export async function waitStable(what: string, probe: () => Promise<boolean>, opts: { timeoutMs?: number; stableMs?: number } = {}): Promise<void> {
  const stableMs = opts.stableMs ?? 2000;
  let since = 0;
  await waitUntil(what, async () => {
    const ok = await probe();
    if (!ok) { since = 0; return false; }
    if (!since) since = Date.now();
    return Date.now() - since >= stableMs;
  }, { timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 250 });
  await sleep(0);
}
