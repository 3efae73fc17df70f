import test from 'ava';
import Consul from 'consul';
import { startConsul } from '../harness/engines/consul.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

test('consul dev agent starts, answers the consul client, and stops without a process left', async (t) => {
  const engine = await startConsul();
  track('consul', engine);
  const consul = new Consul({ host: '127.0.0.1', port: engine.httpPort });
  await consul.kv.set('gantry/harness', 'ok');
  const got = (await consul.kv.get('gantry/harness')) as { Value: string } | undefined;
  t.is(got?.Value, 'ok');
  const pid = engine.proc.pid;
  await engine.stop();
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
