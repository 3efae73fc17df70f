import test from 'ava';
import zookeeper from 'node-zookeeper-client';
import { startZooKeeper } from '../harness/engines/zookeeper.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(JSON.stringify(err)));

function call<T>(fn: (cb: (err: unknown, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(toError(err)) : resolve(v))));
}

async function connect(connectString: string): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connectString, { sessionTimeout: 5000, retries: 1 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ZooKeeper session in 10 s')), 10_000);
    client.once('connected', () => { clearTimeout(timer); resolve(); });
    client.connect();
  });
  return client;
}

const getData = (client: zookeeper.Client, path: string): Promise<Buffer> =>
  new Promise((resolve, reject) => client.getData(path, (err, d) => (err ? reject(toError(err)) : resolve(d))));

test('zookeeper starts, answers node-zookeeper-client, survives kill/restart, and stops without a process left', async (t) => {
  const zk = await startZooKeeper();
  track('zookeeper', zk);
  let client = await connect(zk.connectString);
  const path = '/dubbo/org.example.OrdersService/providers';
  await call<string>((cb) => client.mkdirp(path, cb));
  const url = encodeURIComponent('dubbo://10.0.0.5:20880/org.example.OrdersService?version=1.0');
  await call<string>((cb) => client.create(`${path}/${url}`, Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL, cb));
  const children = await call<string[]>((cb) => client.getChildren(path, cb));
  t.deepEqual(children, [url]);
  t.is((await getData(client, `${path}/${url}`)).toString(), 'x');
  await call<string>((cb) => client.create('/gantry', Buffer.from('kept'), cb));
  client.close();
  // a crash, then a restart on the same port and data dir: persistent znodes are still there
  await zk.kill();
  await zk.restart();
  client = await connect(zk.connectString);
  t.is((await getData(client, '/gantry')).toString(), 'kept');
  client.close();
  const pid = zk.proc.pid;
  await zk.stop();
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
