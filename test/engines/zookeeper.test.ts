import test from 'ava';
import zookeeper from 'node-zookeeper-client';
import { startZooKeeper } from '../harness/engines/zookeeper.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(JSON.stringify(err)));

function call<T>(fn: (cb: (err: unknown, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(toError(err)) : resolve(v))));
}

test('zookeeper starts, answers node-zookeeper-client, and stops without a process left', async (t) => {
  const zk = await startZooKeeper();
  track('zookeeper', zk);
  const client = zookeeper.createClient(zk.connectString, { sessionTimeout: 5000, retries: 1 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ZooKeeper session in 10 s')), 10_000);
    client.once('connected', () => { clearTimeout(timer); resolve(); });
    client.connect();
  });
  const path = '/dubbo/org.example.OrdersService/providers';
  await call<string>((cb) => client.mkdirp(path, cb));
  const url = encodeURIComponent('dubbo://10.0.0.5:20880/org.example.OrdersService?version=1.0');
  await call<string>((cb) => client.create(`${path}/${url}`, Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL, cb));
  const children = await call<string[]>((cb) => client.getChildren(path, cb));
  t.deepEqual(children, [url]);
  const data = await new Promise<Buffer>((resolve, reject) => client.getData(`${path}/${url}`, (err, d) => (err ? reject(toError(err)) : resolve(d))));
  t.is(data.toString(), 'x');
  client.close();
  const pid = zk.proc.pid;
  await zk.stop();
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
