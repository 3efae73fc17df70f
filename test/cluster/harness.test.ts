// The cluster harness itself: three Consul servers and client agents ("hosts")
// that form one cluster with a leader, each host its own node and address; a
// partitionable host whose link goes down and comes back; and stop() leaving
// nothing behind (processes, ports, data, namespaces, links).
import test, { type ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { startCluster, CONSUL_PORTS, waitStable, type ConsulCluster } from '../harness/cluster.ts';
import { waitUntil } from '../harness/process.ts';

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};
const listening = (host: string, port: number): Promise<boolean> => new Promise((resolve) => {
  const s = net.connect({ host, port });
  const timer = setTimeout(() => { s.destroy(); resolve(false); }, 2000); // a link down drops the SYN
  s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(true); });
  s.once('error', () => { clearTimeout(timer); s.destroy(); resolve(false); });
});
const getJson = async <T>(url: string, init?: RequestInit): Promise<T> => {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};

async function assertNothingLeft(t: ExecutionContext, c: ConsulCluster, pids: number[]): Promise<void> {
  t.deepEqual(pids.filter(alive), [], 'no Consul process of the cluster is left');
  const assigned = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (const a of c.addresses) {
    // 127/8 stays local: nothing may listen there; the cluster's own addresses are gone with its links
    if (a.startsWith('127.')) t.false(await listening(a, CONSUL_PORTS.http), `nothing listens on ${a}:${CONSUL_PORTS.http}`);
    else t.false(assigned.includes(` ${a}/`), `${a} is no longer an address of this host`);
  }
  t.false(existsSync(c.dir), 'the data directories are removed');
  const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const n of c.netns) t.false(ns.includes(n), `namespace ${n} is removed`);
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const l of c.links) t.false(links.includes(`${l}:`) || links.includes(`${l}@`), `link ${l} is removed`);
}

test('three servers and three hosts form one cluster: a leader, every member alive, each host its own node and address; stop leaves nothing', async (t) => {
  const c = await startCluster({ clients: 3 });
  const pids = [...c.servers, ...c.clients].map((n) => n.proc.pid);
  try {
    await c.waitHealthy();
    const leader = await c.leader();
    t.true(c.servers.includes(leader), 'the leader is one of the three servers');
    t.is(new Set(c.addresses).size, 6, 'six nodes, six addresses');
    const nodes = await getJson<Array<{ Node: string; Address: string }>>(`${leader.httpAddr}/v1/catalog/nodes`);
    for (const n of [...c.servers, ...c.clients]) {
      t.is(nodes.find((x) => x.Node === n.name)?.Address, n.address, `${n.name} is in the catalog at ${n.address}`);
    }
    const peers = await getJson<string[]>(`${leader.httpAddr}/v1/status/peers`);
    t.deepEqual(peers.map((p) => p.replace(/:\d+$/, '')).sort(), c.servers.map((s) => s.address).sort(), 'three raft peers');

    // a service registered with host b's agent is on host b's node, seen through host c
    const [a, b, hc] = c.clients as [typeof c.clients[0], typeof c.clients[0], typeof c.clients[0]];
    const reg = await fetch(`${b.httpAddr}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ ID: 'web-1', Name: 'web', Port: 80 }) });
    t.true(reg.ok);
    await waitUntil('web on host b', async () => {
      const list = await getJson<Array<{ Node: string; ServiceID: string }>>(`${hc.httpAddr}/v1/catalog/service/web`);
      return list.length === 1 && list[0]!.Node === b.name;
    }, { timeoutMs: 20_000 });
    // KV written through host a, read through host c
    t.true((await fetch(`${a.httpAddr}/v1/kv/cluster-test`, { method: 'PUT', body: 'hello' })).ok);
    const kv = await getJson<Array<{ Value: string }>>(`${hc.httpAddr}/v1/kv/cluster-test`);
    t.is(Buffer.from(kv[0]!.Value, 'base64').toString(), 'hello');

    // an empty restart: same node name and ID, the agent's registrations are gone
    await b.kill();
    await b.restart({ empty: true });
    await waitStable('host b back, without web', async () => {
      const members = await getJson<Array<{ Name: string; Status: number }>>(`${leader.httpAddr}/v1/agent/members`);
      const services = await getJson<Record<string, unknown>>(`${b.httpAddr}/v1/agent/services`);
      return members.find((m) => m.Name === b.name)?.Status === 1 && Object.keys(services).length === 0;
    }, { timeoutMs: 60_000 });
    t.pass();
  } finally {
    await c.stop();
  }
  await assertNothingLeft(t, c, pids);
});

test('a partitionable host: its link down, the servers see it failed; healed, it is alive again; stop leaves no namespace or link', async (t) => {
  const c = await startCluster({ clients: 2, partitionable: [0] });
  const pids = [...c.servers, ...c.clients].map((n) => n.proc.pid);
  try {
    await c.waitHealthy();
    const host = c.clients[0]!;
    t.truthy(host.netns, 'the host runs in a namespace');
    t.regex(host.address, /^10\.250\./, 'at its veth address');
    t.regex(c.servers[0]!.address, /^10\.252\./, 'servers on the cluster\'s own interface');
    const status = async (): Promise<number | undefined> => {
      const s = await c.anyServer();
      const members = await getJson<Array<{ Name: string; Status: number }>>(`${s.httpAddr}/v1/agent/members`);
      return members.find((m) => m.Name === host.name)?.Status;
    };
    await c.partition(host);
    await waitUntil('the partitioned host seen failed', async () => (await status()) === 4, { timeoutMs: 60_000, intervalMs: 500 });
    t.false(await listening(host.address, CONSUL_PORTS.http), 'its agent is unreachable');
    await c.heal(host);
    await waitUntil('the healed host alive again', async () => (await status()) === 1, { timeoutMs: 60_000, intervalMs: 500 });
    t.true(await listening(host.address, CONSUL_PORTS.http), 'its agent answers again');
  } finally {
    await c.stop();
  }
  await assertNothingLeft(t, c, pids);
});
