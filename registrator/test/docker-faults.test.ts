// The Docker engine misbehaving without going away, through a proxy in front of
// the real dockerd (test/harness/engines/docker-proxy.ts): inspect answering
// 500, and the event stream cut while a snapshot waits on an inspect. Neither
// may deregister anything: an inspect error other than 404 says nothing about
// the container.
import test, { type ExecutionContext } from 'ava';
import { ensureDocker, runContainer, cleanupContainers, newRunId } from '../../test/harness/engines/docker.ts';
import { startDockerProxy, type DockerProxy } from '../../test/harness/engines/docker-proxy.ts';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { manageEngines, consulWithDocker } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';

const track = manageEngines(test);
const runId = newRunId();
const fx = consulWithDocker(test, track, runId);


async function setup(t: ExecutionContext, suffix: string): Promise<{ proxy: DockerProxy; reg: GantryProcess; owner: string; run: string; names: () => Promise<string[]>; metric: (re: RegExp) => Promise<number> }> {
  const proxy = await startDockerProxy();
  track(`docker proxy (${suffix})`, { tail: () => proxy.tail(), stop: () => proxy.stop() });
  const owner = `test-${runId}-${suffix}`;
  const run = `${runId}-${suffix}`;
  const reg = await startGantry('registrator', ['--owner', owner, '--require-label', `gantry.test=${run}`, '--docker-socket', proxy.socket, '--resync', '1h', '--log-level', 'debug'], { env: { CONSUL_HTTP_ADDR: fx.engine.addr } });
  track(`registrator (${suffix})`, reg);
  t.teardown(async () => { await cleanupContainers(await ensureDocker(), run); });
  const names = async (): Promise<string[]> => {
    const r = await fx.consul.request<Record<string, { Service: string }>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${owner}"` } });
    return Object.values(r.body ?? {}).map((s) => s.Service).sort();
  };
  const metric = async (re: RegExp): Promise<number> => {
    const m = re.exec(await (await fetch(`${reg.adminUrl}/metrics`)).text());
    return m ? Number(m[1]) : 0;
  };
  return { proxy, reg, owner, run, names, metric };
}

const deregistrations = (reg: GantryProcess): Array<Record<string, unknown>> => reg.logs().filter((l) => l.action === 'deregister');

test.serial('inspect answering 500: nothing is deregistered, the container is retried, a new one registers once inspect works', async (t) => {
  const docker = await ensureDocker();
  const { proxy, reg, run, names, metric } = await setup(t, 'inspect500');
  const a = await runContainer(docker, { runId: run, name: `${run}-a`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'a' } });
  await runContainer(docker, { runId: run, name: `${run}-b`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'b' } });
  await waitUntil('a and b registered', async () => (await names()).join() === 'a,b', { timeoutMs: 15_000 });
  t.is(await metric(/^gantry_registrator_instances\{[^}]*source="docker"[^}]*\} (\d+)/m), 2, 'gantry_registrator_instances counts what we want registered');

  proxy.inspectStatus = 500;
  await a.update({ RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 1 } }); // an event naming a: inspected again
  await runContainer(docker, { runId: run, name: `${run}-c`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'c' } });
  const failedFor = (id: string): number => reg.logs().filter((l) => l.msg === 'inspect failed; keeping the last known state, retrying' && l.container === id.slice(0, 12)).length;
  // positive signal first: a's inspection failed, and was retried (failed again)
  await waitUntil('inspect of a failed and was retried', async () => failedFor(a.id) >= 2, { timeoutMs: 15_000 });
  t.deepEqual(await names(), ['a', 'b'], 'a (last known state) and b stay; c cannot be inspected yet');
  t.deepEqual(deregistrations(reg), []);

  proxy.inspectStatus = undefined;
  await waitUntil('c registered once inspect works', async () => (await names()).join() === 'a,b,c', { timeoutMs: 20_000 });
  t.deepEqual(deregistrations(reg), []);
  t.is(await metric(/^gantry_registrator_instances\{[^}]*source="docker"[^}]*\} (\d+)/m), 3);
  t.false(reg.proc.exited());
});

test.serial('event stream re-opened while a snapshot waits on an inspect: no partial snapshot, nothing deregistered', async (t) => {
  const docker = await ensureDocker();
  const { proxy, reg, run, names, metric } = await setup(t, 'reconnect');
  const a = await runContainer(docker, { runId: run, name: `${run}-a`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'a' } });
  for (const n of ['b', 'c']) await runContainer(docker, { runId: run, name: `${run}-${n}`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: n } });
  await waitUntil('a, b, c registered', async () => (await names()).join() === 'a,b,c', { timeoutMs: 15_000 });
  const resyncs = async (): Promise<number> => metric(/^gantry_registrator_reconcile_passes_total\{(?=[^}]*source="docker")(?=[^}]*reason="resync")[^}]*\} (\d+)/m);
  const resyncsBefore = await resyncs();

  proxy.inspectDelayMs = 2000;
  const before = proxy.inspects;
  await a.update({ RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 1 } }); // event → a snapshot inspecting a
  await waitUntil('the snapshot is waiting on its inspect', async () => proxy.inspects > before && proxy.inspectsInFlight > 0, { timeoutMs: 15_000 });
  t.true(proxy.cutEvents() >= 1, 'an event stream was open');
  await waitUntil('the stream re-opened', async () => reg.logs().some((l) => l.msg === 'docker event stream re-opened; resyncing'), { timeoutMs: 15_000 });
  proxy.inspectDelayMs = 0;
  // positive signal: the full pass the re-opened stream asked for has finished
  await waitUntil('a full pass after the re-open', async () => (await resyncs()) > resyncsBefore, { timeoutMs: 20_000 });
  t.deepEqual(await names(), ['a', 'b', 'c']);
  t.deepEqual(deregistrations(reg), []);
  t.is(await metric(/^gantry_registrator_instances\{[^}]*source="docker"[^}]*\} (\d+)/m), 3);
});
