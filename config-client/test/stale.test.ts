// consistency 'stale' lets any server answer; a server that has no leader (cut
// off, lagging, just started) answers from whatever it holds, with
// X-Consul-KnownLeader: false. The config client refuses such answers (core's
// blocking query): it keeps its view and emits no delete, then resumes when a
// server with a leader answers again.
import test from 'ava';
import { join as pathJoin } from 'node:path';
import { manageEngines } from '../../test/harness/ava.ts';
import { consulBin } from '../../test/harness/bins.ts';
import { freePorts, spawnEngine, tempDir, waitUntil, type ManagedProcess } from '../../test/harness/process.ts';
import { ConfigClient, type ChangeEvent } from '../src/index.ts';
import { captureLogs, kvClient, nextEvent, until } from './helpers.ts';
import { startGate } from './gate.ts';

const track = manageEngines(test);

interface Server { httpPort: number; serverPort: number; proc: ManagedProcess }

/** three Consul servers on loopback ports, joined; resolves once they have a leader */
async function cluster(): Promise<Server[]> {
  const ports = await Promise.all([0, 1, 2].map(() => freePorts(4)));
  const servers = ports.map(([http, serfLan, serfWan, server], i) => {
    const dir = tempDir(`consul-s${i}`);
    const join = ports.filter((_, j) => j !== i).map((p) => `"127.0.0.1:${p[1]}"`).join(', ');
    const proc = spawnEngine(`consul-s${i}`, consulBin(), [
      'agent', '-server', '-bootstrap-expect', '3', '-data-dir', pathJoin(dir, 'data'), '-node', `s${i}-${http}`,
      '-bind', '127.0.0.1', '-client', '127.0.0.1',
      '-hcl', `ports { http = ${http} dns = -1 serf_lan = ${serfLan} serf_wan = ${serfWan} server = ${server} grpc = -1 grpc_tls = -1 }`,
      '-hcl', `retry_join = [${join}]`, '-hcl', 'retry_interval = "1s"', '-hcl', 'performance { raft_multiplier = 1 }',
      '-hcl', 'disable_update_check = true', '-hcl', 'log_level = "warn"',
    ], { logFile: pathJoin(dir, 'consul.log'), cwd: dir });
    track(`consul-s${i}`, proc);
    return { httpPort: http!, serverPort: server!, proc };
  });
  for (const s of servers) {
    await waitUntil('a leader in the three-server cluster', async () => {
      const res = await fetch(`http://127.0.0.1:${s.httpPort}/v1/status/leader`, { signal: AbortSignal.timeout(2000) });
      return ((await res.json()) as string).length > 0;
    }, { proc: s.proc, timeoutMs: 60_000 });
  }
  return servers;
}

const stop = (s: Server): void => { process.kill(-s.proc.pid, 'SIGSTOP'); };
const resume = (s: Server): void => { process.kill(-s.proc.pid, 'SIGCONT'); };

test("consistency 'stale': a lagging server without a known leader is not believed; no key is deleted, and reading resumes from a server with one", async (t) => {
  const servers = await cluster();
  // s2, the one that will lag, is a follower (freezing the leader would stall the writes below)
  const leader = (await (await fetch(`http://127.0.0.1:${servers[0]!.httpPort}/v1/status/leader`)).json()) as string;
  const byRole = [...servers].sort((a, b) => Number(leader.endsWith(`:${b.serverPort}`)) - Number(leader.endsWith(`:${a.serverPort}`)));
  const [s0, s1, s2] = byRole as [Server, Server, Server];
  t.teardown(() => { for (const s of servers) resume(s); });
  const addr = (s: Server): string => `http://127.0.0.1:${s.httpPort}`;
  let writeVia = s0;
  const kv = kvClient(() => addr(writeVia));
  await kv.txn([{ set: 'app/a', value: 'one' }]);
  // s2 is frozen while keys are added: it lags behind them
  stop(s2);
  await kv.txn([{ set: 'app/b', value: 'two' }, { set: 'app/c', value: 'three' }]);
  const gate = await startGate(s0.httpPort);
  t.teardown(() => gate.close());
  const config = await ConfigClient.start({
    prefixes: ['app/'], consistency: 'stale', consul: { addr: gate.addr },
    retry: { baseMs: 20, maxMs: 300 }, logger: captureLogs('error').logger,
  });
  t.teardown(() => config.close());
  const events: ChangeEvent[] = [];
  config.on('change', (e) => events.push(e));
  t.is(config.get('b'), 'two');

  // now s0 and s1 freeze and s2 wakes up: it holds only app/a and finds no leader
  stop(s0);
  stop(s1);
  resume(s2);
  await waitUntil('s2 answering stale reads without a leader', async () => {
    const res = await fetch(`${addr(s2)}/v1/kv/app/?recurse&stale`, { signal: AbortSignal.timeout(2000) });
    return res.headers.get('x-consul-knownleader') === 'false';
  }, { timeoutMs: 30_000 });
  gate.retarget(s2.httpPort);
  await until('the refusal recorded', () => (config.status()[0]?.error ?? '').includes('known leader'), 30_000);
  t.is(config.get('b'), 'two');
  t.is(config.get('c'), 'three');
  t.deepEqual(events.filter((e) => e.type === 'deleted'), [], 'no delete from a lagging server without a leader');

  // the cluster whole again: reading resumes, a change made meanwhile arrives, nothing was lost
  resume(s0);
  resume(s1);
  writeVia = s0;
  await waitUntil('a leader again', async () => {
    const res = await fetch(`${addr(s2)}/v1/status/leader`, { signal: AbortSignal.timeout(2000) });
    return ((await res.json()) as string).length > 0;
  }, { timeoutMs: 60_000 });
  const changed = nextEvent(config, 'change', (e) => e.key === 'a', 60_000);
  await kv.put('app/a', 'four');
  t.is((await changed).newValue, 'four');
  t.is(config.get('b'), 'two');
  t.is(config.get('c'), 'three');
  t.deepEqual(events.filter((e) => e.type === 'deleted'), []);
});
