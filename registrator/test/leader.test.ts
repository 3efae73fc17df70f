// Leader election against a real Consul: no hot loop while Consul's lock-delay
// refuses the lock, and the check, the session and the heartbeats on one agent
// (the session names the node whose agent holds the check).
import test from 'ava';
import net from 'node:net';
import { createConsul, createLogger } from '@gantry/core';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { tempDir, waitUntil } from '../../test/harness/process.ts';
import { LeaderElection } from '../src/leader.ts';

const track = manageEngines(test);
const log = createLogger({ component: 'test', level: 'silent' });

test('during the lock-delay after the holder died, a follower asks a bounded number of times a second, then takes the lock', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  const c = createConsul({ addr: consul.addr });
  const key = 'gantry/test/leader';
  // a holder whose session has a 3 s lock-delay (what a replica that died leaves behind)
  const holder = await c.request<{ ID: string }>('PUT', '/v1/session/create', { body: { Name: 'holder', LockDelay: '3s', Behavior: 'release', NodeChecks: [] } });
  t.true((await c.request<boolean>('PUT', `/v1/kv/${key}`, { query: { acquire: holder.body.ID }, body: 'holder' })).body);
  const requests: number[] = [];
  let leader = false;
  const ac = new AbortController();
  const e = new LeaderElection({ consul: c, key, id: 'follower', ttlMs: 10_000, log, onChange: (l) => { leader = l; }, onRequest: () => requests.push(performance.now()) });
  const run = e.run(ac.signal);
  try {
    // the follower is blocked on the key: a request or two, then nothing
    await waitUntil('the follower waiting on the lock', async () => requests.length >= 4, { timeoutMs: 20_000 });
    t.false(leader);
    const destroyedAt = performance.now();
    await c.request('PUT', `/v1/session/destroy/${holder.body.ID}`);
    await waitUntil('the follower leading', async () => leader, { timeoutMs: 30_000, intervalMs: 20 });
    const tookMs = performance.now() - destroyedAt;
    const during = requests.filter((r) => r >= destroyedAt).length;
    const perSecond = during / (tookMs / 1000);
    t.log(`${during} requests in ${Math.round(tookMs)} ms until leading (${perSecond.toFixed(1)}/s)`);
    // Consul refuses the lock for 3 s: the follower could not lead before
    t.true(tookMs >= 2900, `led after ${Math.round(tookMs)} ms`);
    // a hot loop sends hundreds a second; the election waits part of the lock-delay between tries
    t.true(perSecond <= 20, `${perSecond.toFixed(1)} requests a second during the lock-delay`);
  } finally {
    ac.abort();
    await run;
    c.close();
  }
});

/** a TCP pass-through that sends each new connection to the next upstream in turn (a load balancer in front of agents) */
async function roundRobin(ports: number[]): Promise<{ addr: string; close(): Promise<void> }> {
  let n = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: ports[n++ % ports.length]! });
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => { client.destroy(); upstream.destroy(); }).on('close', () => sockets.delete(s)); }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    addr: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

test('behind a load balancer over two agents, the check, the session and the heartbeats go to one agent: the leader stays leader', async (t) => {
  const server = await startConsul();
  track('consul-server', server);
  const direct = createConsul({ addr: server.addr });
  const serf = (await direct.request<{ Member: { Port: number } }>('GET', '/v1/agent/self')).body.Member.Port;
  const client = await startConsul({ hcl: `server = false\nbootstrap = false\ndata_dir = "${tempDir('consul-client')}"\nretry_join = ["127.0.0.1:${serf}"]` });
  track('consul-client', client);
  await waitUntil('two members', async () => (await direct.request<unknown[]>('GET', '/v1/agent/members')).body.length === 2, { timeoutMs: 30_000 });
  const lb = await roundRobin([server.httpPort, client.httpPort]);
  const c = createConsul({ addr: lb.addr });
  const key = 'gantry/test/leader2';
  let leader = false;
  let changes = 0;
  let heartbeats = 0;
  const ac = new AbortController();
  const ttlMs = 2000;
  const e = new LeaderElection({
    consul: c, key, id: 'r1', ttlMs, log,
    onChange: (l) => { leader = l; changes++; },
    onRequest: (what) => { if (what === 'check-pass') heartbeats++; },
  });
  const run = e.run(ac.signal);
  try {
    await waitUntil('leading', async () => leader, { timeoutMs: 30_000 });
    const kv = await direct.request<Array<{ Session: string }>>('GET', `/v1/kv/${key}`);
    const session = (await direct.request<Array<{ Node: string; ServiceChecks: Array<{ ID: string }> | null }>>('GET', `/v1/session/info/${kv.body[0]!.Session}`)).body[0]!;
    t.true((session.ServiceChecks ?? []).some((c) => c.ID === 'gantry-leader:r1'));
    // the check is on the node the session names
    const onNode = async (): Promise<string | undefined> => (await direct.request<Array<{ CheckID: string; Status: string }>>('GET', `/v1/health/node/${encodeURIComponent(session.Node)}`)).body.find((x) => x.CheckID === 'gantry-leader:r1')?.Status;
    t.is(await onNode(), 'passing');
    // heartbeats for more than three TTLs (a positive count, not a sleep): had they gone to the other
    // agent, the check would have turned critical and the session, with the lock, would be gone
    const from = heartbeats;
    await waitUntil('heartbeats over three TTLs', async () => heartbeats - from >= 10, { timeoutMs: 60_000 });
    t.is(await onNode(), 'passing');
    const now = await direct.request<Array<{ Session?: string }>>('GET', `/v1/kv/${key}`);
    t.is(now.body[0]?.Session, kv.body[0]!.Session, 'the same session still holds the lock');
    t.true(leader);
    t.is(changes, 1, 'leadership never flapped');
  } finally {
    ac.abort();
    await run;
    c.close();
    direct.close();
    await lb.close();
  }
});
