// Chaos on a real Consul cluster (3 servers, 3 hosts + an edge agent) while
// containers start and stop: each case ends in an exact state — Consul's
// catalog equals the running containers (none missing, no orphan, each on its
// host's node) and HAProxy serves exactly the passing set — and logs its
// convergence time. Scaled for `make test` on a shared 2-core machine: churn of
// one change every 400 ms for ~15 s with at most 30 containers per case
// (the 100 containers run in `node bench/run.ts cluster`).
// One stack serves every case (serial) to keep the wall time down.
import test, { type ExecutionContext } from 'ava';
import { startClusterStack, SERVICE, type ClusterStack } from '../harness/cluster-stack.ts';
import { leaderKill, agentKillEmpty, serverFreeze, partition, redisMasterKill, partsKill, auditCheck, type CaseResult } from '../harness/cluster-chaos.ts';
import { waitUntil } from '../harness/process.ts';

let stack: ClusterStack | undefined;
const TIMEOUT = 360_000;

test.before(async (t) => {
  t.timeout(180_000);
  stack = await startClusterStack();
  for (const h of stack.hosts) {
    await stack.startContainer(h);
    await stack.startContainer(h);
  }
  await stack.waitConverged('initial six containers');
});

test.afterEach.always((t) => {
  if (!t.passed && stack) t.log(stack.tail(20));
});

test.after.always(async () => {
  await stack?.stop();
});

function assertExact(t: ExecutionContext, r: CaseResult): void {
  t.log(`${r.name}: converge_ms=${r.convergeMs} (${r.started} started, ${r.stopped} stopped) ${JSON.stringify(r.notes)}`);
  t.is(r.lost, 0, 'no running container missing from the catalog');
  t.is(r.orphans, 0, 'no orphan in the catalog');
  t.true(r.convergeMs >= 0, 'converged');
}

async function assertServing(t: ExecutionContext, s: ClusterStack): Promise<void> {
  // A reload may leave an old worker answering for a moment, so wait (45 s at most) for one round
  // answered by exactly the running set with no failed request; earlier rounds are logged, not hidden.
  const running = await s.running();
  const want = [...running.keys()].sort();
  let names = new Set<string>();
  let failed = 0;
  const deadline = Date.now() + 45_000;
  for (let round = 1; ; round++) {
    ({ names, failed } = await s.traffic(Math.max(20, running.size * 3)));
    const got = [...names].sort();
    if (failed === 0 && JSON.stringify(got) === JSON.stringify(want)) break;
    t.log(`traffic round ${round}: ${failed} failed, answered by ${got.join(',')}; running ${want.join(',')}`);
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.is(failed, 0, 'every request through HAProxy answered 200');
  const same = t.deepEqual([...names].sort(), want, 'HAProxy serves exactly the running (passing) containers');
  if (!same) {
    t.log(await s.haproxy.runtime('show servers state'));
    const server = await s.cluster.anyServer();
    t.log(JSON.stringify(await (await fetch(`${server.httpAddr}/v1/health/service/${SERVICE}`)).json()));
    const ips = await Promise.all([...running.keys()].map(async (n) => `${n}=${(await s.docker.getContainer(n).inspect()).NetworkSettings.Networks.bridge?.IPAddress}`));
    t.log(ips.join(' '));
  }
}

const log = (t: ExecutionContext) => (m: string): void => t.log(m);

test.serial('the Consul leader SIGKILLed while containers start and stop, then restarted: catalog and HAProxy exact', async (t) => {
  t.timeout(TIMEOUT);
  const r = await leaderKill(stack!, { log: log(t) });
  assertExact(t, r);
  await assertServing(t, stack!);
  const leader = await stack!.cluster.leader();
  const peers = (await (await fetch(`${leader.httpAddr}/v1/status/peers`)).json()) as string[];
  t.is(peers.length, 3, 'the restarted server is a raft peer again');
});

test.serial('a client agent SIGKILLed and restarted empty while its host\'s containers change: re-registered, exact', async (t) => {
  t.timeout(TIMEOUT);
  const r = await agentKillEmpty(stack!, { log: log(t) });
  assertExact(t, r);
  await assertServing(t, stack!);
});

test.serial('a server SIGSTOPped longer than the election timeout, then resumed: exact', async (t) => {
  t.timeout(TIMEOUT);
  const r = await serverFreeze(stack!, { log: log(t) });
  assertExact(t, r);
  await assertServing(t, stack!);
});

test.serial('one host\'s link down for 30 s (its instances leave HAProxy), then healed: exact', async (t) => {
  t.timeout(TIMEOUT);
  const host = stack!.hosts.find((h) => h.node.netns)!;
  const said = (msg: string): number => host.registrator.logs().filter((l) => l.msg === msg).length;
  const cut0 = said('the Consul servers do not see this agent alive: asking it to rejoin them until they do');
  const back0 = said('the Consul servers see this agent alive again; resyncing');
  const r = await partition(stack!, { log: log(t), partitionMs: 30_000 });
  t.true(Number(r.notes.isolated_ms) > 0, 'while cut off, HAProxy served exactly the passing set without the host');
  assertExact(t, r);
  // the host's registrator saw its agent lose the servers, and saw it reach them again
  // (by its own join or Consul's 30 s reconnect, whichever came first)
  t.true(said('the Consul servers do not see this agent alive: asking it to rejoin them until they do') > cut0);
  // its next check (every 3 s) sees the node alive: wait for that line rather than race it
  await waitUntil('the registrator sees its agent alive again', async () => said('the Consul servers see this agent alive again; resyncing') > back0, { timeoutMs: 20_000 });
  t.true(said('the Consul servers see this agent alive again; resyncing') > back0);
  t.log(host.registrator.logs().filter((l) => String(l.msg).includes('rejoin') || String(l.msg).includes('leader')).slice(-15).map((l) => JSON.stringify(l)).join('\n'));
  t.log(`joins asked by the registrator: ${await host.registrator.metric('gantry_registrator_agent_joins_total', { result: 'ok' })} ok, ${await host.registrator.metric('gantry_registrator_agent_joins_total', { result: 'failed' })} failed`);
  await assertServing(t, stack!);
});

test.serial('the Redis master SIGKILLed during churn: Sentinel promotes the replica; every audit entry in the stream once or counted as dropped', async (t) => {
  t.timeout(TIMEOUT);
  const r = await redisMasterKill(stack!, { log: log(t) });
  assertExact(t, r);
  const a = await auditCheck(stack!);
  t.log(`audit: ${JSON.stringify(a)}`);
  t.is(a.pending, 0, 'every registrator flushed its audit buffer');
  t.is(a.duplicates, 0, 'no audit entry twice');
  t.is(a.written + a.dropped, a.applied, 'every applied change was written or counted as dropped');
  t.is(a.stream, a.written, 'the stream holds exactly what was written');
  t.true(a.applied > 0);
});

test.serial('a registrator and the templater SIGKILLed at random moments of the churn, restarted: exact', async (t) => {
  t.timeout(TIMEOUT);
  const r = await partsKill(stack!, { log: log(t) });
  assertExact(t, r);
  await assertServing(t, stack!);
});
