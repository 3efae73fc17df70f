import test from 'ava';
import { Redis } from 'ioredis';
import { startRedis } from '../harness/engines/redis.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

test('redis starts, answers ioredis (strings and streams), restarts on its port, and stops without a process left', async (t) => {
  const redis = await startRedis();
  track('redis', redis);
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  await client.set('gantry:harness', 'ok');
  t.is(await client.get('gantry:harness'), 'ok');
  const id = await client.xadd('gantry:audit', '*', 'action', 'register');
  const entries = await client.xrange('gantry:audit', '-', '+');
  t.is(entries.length, 1);
  t.is(entries[0]![0], id ?? 'no id returned');
  t.deepEqual(entries[0]![1], ['action', 'register']);
  client.disconnect();
  // a crash and a restart on the same port (nothing kept: --save "")
  await redis.kill();
  await redis.restart();
  const again = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await again.connect();
  t.is(await again.get('gantry:harness'), null);
  again.disconnect();
  const pid = redis.proc.pid;
  await redis.stop();
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
