import test from 'ava';
import { startHAProxy } from '../harness/engines/haproxy.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

test('haproxy starts in master-worker mode, answers its runtime and master sockets and HTTP, reloads, and stops clean', async (t) => {
  const haproxy = await startHAProxy();
  track('haproxy', haproxy);
  const info = await haproxy.runtime('show info');
  t.regex(info, /^Name: HAProxy/m);
  t.regex(info, /^Version: 2\./m);
  const stat = await haproxy.runtime('show stat');
  t.regex(stat, /^web,FRONTEND,/m);
  const res = await fetch(`http://127.0.0.1:${haproxy.httpPort}/`);
  t.is(res.status, 200);
  t.is(await res.text(), 'ok');
  const before = await haproxy.processes();
  t.is(before.workers.length, 1);
  t.true(await haproxy.reload());
  const after = await haproxy.processes();
  t.is(after.reloads, before.reloads + 1);
  t.notDeepEqual(after.workers, before.workers);
  t.is((await fetch(`http://127.0.0.1:${haproxy.httpPort}/`)).status, 200);
  const pids = [haproxy.proc.pid, ...after.workers];
  await haproxy.stop();
  for (const pid of pids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid}`);
});
