import test from 'ava';
import { startHAProxy } from '../harness/engines/haproxy.ts';
import { manageEngines } from '../harness/ava.ts';
import { removeDir } from '../harness/process.ts';

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
  const stats = await fetch(`http://127.0.0.1:${haproxy.statsPort}/;csv`);
  t.regex(await stats.text(), /^web,FRONTEND,/m);
  t.regex(await haproxy.master('show proc'), /master/);
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

test('haproxy that cannot start fails with the reason from its log', async (t) => {
  const err = await t.throwsAsync(startHAProxy({ config: 'global\n    no-such-keyword\n' }));
  t.regex(err?.message ?? '', /exited before it was ready/);
  t.regex(err?.message ?? '', /no-such-keyword/);
  const dir = /log (\/\S+)\/haproxy\.log/.exec(err?.message ?? '')?.[1];
  t.truthy(dir, 'the message names the log file');
  if (dir) removeDir(dir); // kept for a failed start, so its log can be read
});

test('a config string gets the engine dir and free ports', async (t) => {
  const config = `global
    maxconn 100
    stats socket {{dir}}/admin.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{{httpPort}}
    http-request return status 204
`;
  const haproxy = await startHAProxy({ config });
  track('haproxy-string-config', haproxy);
  t.is((await fetch(`http://127.0.0.1:${haproxy.httpPort}/`)).status, 204);
  t.regex(await haproxy.runtime('show info'), /^Maxconn: 100$/m);
  await haproxy.stop();
});
