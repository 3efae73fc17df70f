import test from 'ava';
import { ensureDocker, runContainer, cleanupContainers, newRunId } from '../harness/engines/docker.ts';
import { waitUntil } from '../harness/process.ts';

const runId = newRunId();

test.after.always(async () => {
  const docker = await ensureDocker();
  await cleanupContainers(docker, runId);
});

test('docker engine answers dockerode; a test-image container with a published port serves HTTP and is removed', async (t) => {
  const docker = await ensureDocker();
  const c = await runContainer(docker, { runId, publish: { '8080/tcp': '0' } });
  const info = await c.inspect();
  t.true(info.State.Running);
  t.is(info.Config.Labels['gantry.test'], runId);
  const hostPort = info.NetworkSettings.Ports['8080/tcp']?.[0]?.HostPort;
  t.truthy(hostPort);
  const body = await waitUntil('container http', async () => {
    const res = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(1000) });
    return res.ok ? res.text() : undefined;
  }, { timeoutMs: 15_000 });
  t.is(body.trim(), 'gantry test image');
  const pid = info.State.Pid;
  t.is(await cleanupContainers(docker, runId), 1);
  await t.throwsAsync(c.inspect());
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});

test('without a Docker engine, ensureDocker says what to run', async (t) => {
  const err = await t.throwsAsync(ensureDocker('/nonexistent/docker.sock'));
  t.regex(err?.message ?? '', /no engine answers on \/nonexistent\/docker\.sock.*make deps/);
});
