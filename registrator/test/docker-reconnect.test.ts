// The Docker connection breaks for real: the registrator talks to dockerd
// through a socat unix-socket proxy that the test kills (closing the event
// stream mid-flight) and starts again. The process must not exit; events
// resume and the state converges.
import test from 'ava';
import { join } from 'node:path';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { ensureDocker, runContainer, cleanupContainers, newRunId, dockerSocket } from '../../test/harness/engines/docker.ts';
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
