// The registrator's identity is the Consul agent's (its node name), not its
// own hostname, which changes whenever its container is re-created. Each
// registrator here runs in a UTS namespace of its own under another hostname.
import test from 'ava';
import { ensureDocker, runContainer, cleanupContainers, newRunId } from '../../test/harness/engines/docker.ts';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { manageEngines, consulWithDocker } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';

const track = manageEngines(test);
const runId = newRunId();
const fx = consulWithDocker(test, track, runId);

interface AgentService { ID: string; Service: string; Meta: Record<string, string> }


const dockerServices = async (): Promise<AgentService[]> => {
  const r = await fx.consul.request<Record<string, AgentService>>('GET', '/v1/agent/services', { query: { filter: 'Meta["gantry-source"] == "docker"' } });
  return Object.values(r.body ?? {}).sort((a, b) => a.ID.localeCompare(b.ID));
};

async function registrator(hostname: string): Promise<GantryProcess> {
  const reg = await startGantry('registrator', ['--require-label', `gantry.test=${runId}`, '--resync', '1h'], { env: { CONSUL_HTTP_ADDR: fx.engine.addr }, hostname });
  track(`registrator (${hostname})`, reg);
  // its first pass is over (whatever it had to change)
  await waitUntil('first pass', async () => /gantry_registrator_reconcile_passes_total\{[^}]*reason="start"[^}]*\} [1-9]/.test(await (await fetch(`${reg.adminUrl}/metrics`)).text()), { timeoutMs: 20_000 });
  return reg;
}

const changes = async (reg: GantryProcess): Promise<string[]> =>
  ((await (await fetch(`${reg.adminUrl}/metrics`)).text()).match(/^gantry_registrator_changes_total\{.*$/gm) ?? []);

test.serial('owner and IDs come from the agent\'s node name: a registrator under a new hostname keeps its predecessor\'s records as they are', async (t) => {
  const docker = await ensureDocker();
  const self = await fx.consul.request<{ Config: { NodeName: string } }>('GET', '/v1/agent/self');
  const node = self.body.Config.NodeName;
  const first = await registrator(`reg-old-${runId}`);
  await runContainer(docker, { runId, name: `${runId}-x`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'x' } });
  const [x] = await waitUntil('x registered', async () => { const s = await dockerServices(); return s.length === 1 ? s : undefined; }, { timeoutMs: 15_000 });
  t.is(x!.Meta['gantry-owner'], `registrator@${node}`);
  t.true(x!.ID.startsWith(`${node}:${runId}-x:`), x!.ID);
  t.true(x!.Meta['gantry-origin']!.startsWith(`${node}/`));
  await first.stop();

  const second = await registrator(`reg-new-${runId}`);
  t.deepEqual(await dockerServices(), [x], 'the same record, same ID and owner: nothing orphaned, nothing doubled');
  t.deepEqual(await changes(second), [], 'the successor changed nothing');
  await second.stop();
});

test.serial('records of a registrator whose owner was its hostname (the old default) are adopted, not orphaned', async (t) => {
  const docker = await ensureDocker();
  await cleanupContainers(docker, runId);
  for (const s of await dockerServices()) await fx.consul.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(s.ID)}`);
  const node = (await fx.consul.request<{ Config: { NodeName: string } }>('GET', '/v1/agent/self')).body.Config.NodeName;
  // what an older registrator wrote before it went away: owner and ID made of its hostname
  const y = await runContainer(docker, { runId, name: `${runId}-y`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'y' } });
  const port = Number((await y.inspect()).NetworkSettings.Ports['8080/tcp']![0]!.HostPort);
  const legacyId = `oldhost-${runId}:${runId}-y:8080`;
  await fx.consul.request('PUT', '/v1/agent/service/register', { body: { ID: legacyId, Name: 'y', Address: '127.0.0.1', Port: port, Meta: { 'gantry-owner': `registrator@oldhost-${runId}`, 'gantry-source': 'docker', 'gantry-origin': `oldhost-${runId}/${y.id.slice(0, 12)}` } } });
  const gone = await runContainer(docker, { runId, name: `${runId}-gone`, publish: { '8080/tcp': '0' }, env: { SERVICE_NAME: 'gone' } });
  const goneId = `oldhost-${runId}:${runId}-gone:8080`;
  await fx.consul.request('PUT', '/v1/agent/service/register', { body: { ID: goneId, Name: 'gone', Address: '127.0.0.1', Port: 1, Meta: { 'gantry-owner': `registrator@oldhost-${runId}`, 'gantry-source': 'docker' } } });
  await gone.remove({ force: true });
  // someone else's record on the same agent, not a registrator's: never touched
  await fx.consul.request('PUT', '/v1/agent/service/register', { body: { ID: 'bystander', Name: 'bystander', Port: 1, Meta: { 'gantry-owner': 'someone-else', 'gantry-source': 'docker' } } });

  const reg = await registrator(`reg-new2-${runId}`);
  const after = await dockerServices();
  t.deepEqual(after.map((s) => `${s.Service} ${s.Meta['gantry-owner']}`).sort(), ['bystander someone-else', `y registrator@${node}`]);
  t.true(after.find((s) => s.Service === 'y')!.ID.startsWith(`${node}:`));
  t.true(reg.logs().some((l) => l.msg === 'adopting the records of an earlier registrator on this agent'));
});
