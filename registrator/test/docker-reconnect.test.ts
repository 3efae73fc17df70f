// The Docker engine goes away for real, two ways: the connection is cut (a
// socat unix-socket proxy in front of the shared dockerd is killed mid-stream
// and started again), and the engine itself restarts (a private dockerd is
// stopped and started). The process must not exit; events resume and the
// state converges.
import test from 'ava';
import { join } from 'node:path';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId, dockerSocket, testImage } from '../../test/harness/engines/docker.ts';
import { startPrivateDocker } from '../../test/harness/engines/private-docker.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { spawnEngine, tempDir, waitUntil, removeDir, type ManagedProcess } from '../../test/harness/process.ts';
import { systemBin } from '../../test/harness/bins.ts';
import { existsSync } from 'node:fs';

const track = manageEngines(test);
const runId = newRunId();
let consul: ConsulClient;

test.after.always(async () => {
  await cleanupContainers(await ensureDocker(), runId);
  consul?.close();
});

test('event stream closed (dockerd unreachable): registrator keeps running, re-opens it, converges', async (t) => {
  const docker = await ensureDocker();
  const consulEngine = await startConsul();
  track('consul', consulEngine);
  consul = createConsul({ addr: consulEngine.addr });
  const dir = tempDir('docker-proxy');
  const sock = join(dir, 'docker.sock');
  let proxy: ManagedProcess | undefined;
  const startProxy = async (): Promise<void> => {
    proxy = spawnEngine('socat', systemBin('socat'), [`UNIX-LISTEN:${sock},fork,unlink-early`, `UNIX-CONNECT:${dockerSocket}`], { logFile: join(dir, 'socat.log') });
    await waitUntil('proxy socket', async () => existsSync(sock), { proc: proxy, timeoutMs: 5000 });
  };
  track('socat', { tail: (n) => proxy?.tail(n) ?? '', stop: async () => { await proxy?.stop(); removeDir(dir); } });
  await startProxy();
  const owner = `test-${runId}`;
  const registrator = await startGantry('registrator', ['--owner', owner, '--require-label', `gantry.test=${runId}`, '--docker-socket', sock, '--resync', '30s'], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });
  track('registrator', registrator);
  const names = async (): Promise<string[]> => {
    const r = await consul.request<Record<string, { Service: string }>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${owner}"` } });
    return Object.values(r.body ?? {}).map((s) => s.Service).sort();
  };
  await runContainer(docker, { runId, name: `${runId}-before`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'before' }, labels: { 'gantry.test': runId } });
  await waitUntil('before', async () => (await names()).includes('before'), { timeoutMs: 15_000 });

  await proxy!.kill(); // every connection through it, the event stream included, is cut
  const during = await runContainer(docker, { runId, name: `${runId}-during`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'during' }, labels: { 'gantry.test': runId } });
  await waitUntil('registrator noticed', async () => registrator.logs().some((l) => /docker event stream closed|docker unreachable/.test(String(l.msg))), { timeoutMs: 15_000 });
  t.false(registrator.proc.exited());
  t.false((await names()).includes('during'));

  await startProxy();
  await waitUntil('converged after reconnect', async () => {
    const n = await names();
    return n.includes('before') && n.includes('during');
  }, { timeoutMs: 20_000 });
  await during.stop({ t: 0 });
  await waitUntil('events resumed', async () => !(await names()).includes('during'), { timeoutMs: 15_000 });
  t.false(registrator.proc.exited());
  t.true(registrator.logs().some((l) => l.msg === 'docker event stream re-opened; resyncing'));
});

// The engine itself restarted: a private dockerd (its own socket, data root and
// containerd namespace; see test/harness/engines/private-docker.ts) is stopped
// with SIGTERM, which stops its containers, and started again, which brings
// back the ones with a restart policy. Host networking, so the private engine
// needs no bridge or iptables rules of its own.
test('dockerd restarted: events resume and Consul converges to what runs after the restart', async (t) => {
  const engine = await startPrivateDocker();
  track('private dockerd', engine);
  const consulEngine = await startConsul();
  track('consul', consulEngine);
  const c = createConsul({ addr: consulEngine.addr });
  t.teardown(() => c.close());
  const owner = `test-${runId}-restart`;
  const registrator = await startGantry('registrator', ['--owner', owner, '--docker-socket', engine.socket, '--ip', '127.0.0.1', '--resync', '30s'], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });
  track('registrator (private dockerd)', registrator);
  const services = async (): Promise<Map<string, string>> => {
    const r = await c.request<Record<string, { ID: string; Service: string }>>('GET', '/v1/agent/services', { query: { filter: `Meta["gantry-owner"] == "${owner}"` } });
    return new Map(Object.values(r.body ?? {}).map((s) => [s.Service, s.ID]));
  };
  // the image exposes 8080; `sleep` leaves it unbound, so containers on the host network do not clash
  const run = async (name: string, restart: 'no' | 'always'): Promise<string> => {
    const ctr = await engine.docker.createContainer({
      Image: testImage, name: `${runId}-${name}`, Cmd: ['sleep', '3600'], Env: [`SERVICE_NAME=${name}`],
      HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: restart } },
    });
    await ctr.start();
    return ctr.id;
  };
  await run('oneshot', 'no');
  await run('always', 'always');
  await waitUntil('both registered', async () => { const s = await services(); return s.has('oneshot') && s.has('always'); }, { timeoutMs: 15_000 });
  const alwaysId = (await services()).get('always');

  await engine.down();
  await waitUntil('registrator noticed', async () => registrator.logs().some((l) => /docker event stream closed|docker unreachable/.test(String(l.msg))), { timeoutMs: 15_000 });
  t.false(registrator.proc.exited(), 'the registrator outlives dockerd');
  t.false((await fetch(`${registrator.adminUrl}/healthz`)).ok, '/healthz says the Docker engine is gone');

  await engine.up();
  // after the restart: the container without a restart policy stays stopped, the other runs again
  await waitUntil('converged after the restart', async () => { const s = await services(); return !s.has('oneshot') && s.has('always'); }, { timeoutMs: 30_000 });
  t.is((await services()).get('always'), alwaysId, 'the restarted container keeps its service ID (no duplicate)');
  // events flow again: a new container is registered, a stopped one deregistered
  await run('after', 'no');
  await waitUntil('new container registered', async () => (await services()).has('after'), { timeoutMs: 15_000 });
  await engine.docker.getContainer(`${runId}-always`).update({ RestartPolicy: { Name: 'no' } });
  await engine.docker.getContainer(`${runId}-always`).kill();
  await waitUntil('killed container deregistered', async () => !(await services()).has('always'), { timeoutMs: 15_000 });
  t.deepEqual([...(await services()).keys()].sort(), ['after']);
  t.true(registrator.logs().some((l) => l.msg === 'docker event stream re-opened; resyncing'));
  t.false(registrator.proc.exited());
});
