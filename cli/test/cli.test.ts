// The gantry CLI as a user runs it: a bad flag or value exits 2 naming it.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../test/harness/bins.ts';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { startRedis } from '../../test/harness/engines/redis.ts';
import { startHAProxy } from '../../test/harness/engines/haproxy.ts';
import { startKube } from '../../test/harness/engines/kube.ts';
import { ensureDocker, dockerSocket } from '../../test/harness/engines/docker.ts';
import { socketCommand } from '../../test/harness/unix-socket.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { startGantry } from '../../test/harness/gantry.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { readFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const track = manageEngines(test);
const gantry = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });

/** the same, without blocking the event loop (engines in this process keep answering) */
const gantryAsync = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
  const c = spawn(process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), ...args], { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  c.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
  c.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
});

test('no command or an unknown one: usage and exit 2', (t) => {
  const none = gantry([]);
  t.is(none.status, 2);
  t.regex(none.stdout, /Usage: gantry <command>/);
  const unknown = gantry(['frobnicate']);
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /unknown command "frobnicate"/);
});

test('unknown flag, bad duration, bad URL: exit 2 naming the flag and the value', (t) => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['doctor', '--bogus'], {}, /unknown flag "--bogus"/],
    [['doctor', '--timeout', '5 seconds'], {}, /flag --timeout: invalid value "5 seconds": expected a duration/],
    [['doctor', '--consul-addr', '::nope'], {}, /flag --consul-addr: invalid value "::nope"/],
    [['doctor'], { CONSUL_HTTP_ADDR: 'gopher://x' }, /environment variable CONSUL_HTTP_ADDR \(flag --consul-addr\)/],
  ];
  for (const [args, env, re] of cases) {
    const r = gantry(args, env);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, re);
  }
});

test('--help lists every flag with its environment twin', (t) => {
  const r = gantry(['doctor', '--help']);
  t.is(r.status, 0);
  for (const env of ['CONSUL_HTTP_ADDR', 'CONSUL_HTTP_TOKEN', 'CONSUL_HTTP_TOKEN_FILE', 'CONSUL_CACERT', 'CONSUL_CLIENT_CERT', 'CONSUL_CLIENT_KEY', 'GANTRY_TIMEOUT']) {
    t.true(r.stdout.includes(`env: ${env}`), env);
  }
});

test('doctor: ok against a real Consul, exit 1 naming the address when none answers', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  const ok = gantry(['doctor'], { CONSUL_HTTP_ADDR: consul.addr });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /consul: ok .* leader=127\.0\.0\.1:\d+/);
  await consul.stop();
  const down = gantry(['doctor', '--timeout', '1s'], { CONSUL_HTTP_ADDR: consul.addr });
  t.is(down.status, 1);
  t.regex(down.stdout, new RegExp(`consul: FAILED ${consul.addr.replace(/[.]/g, '\\.')}`));
});

test('doctor checks every engine its flags name: Redis (with the URL\'s password), HAProxy\'s sockets, Docker; a failing one exits 1 naming it, never the password', async (t) => {
  // one after the other, each tracked as soon as it runs (nothing left behind when one fails to start)
  const consul = await startConsul();
  track('consul', consul);
  const redis = await startRedis();
  track('redis', redis);
  const haproxy = await startHAProxy();
  track('haproxy', haproxy);
  await ensureDocker();
  await socketCommand({ host: '127.0.0.1', port: redis.port }, 'CONFIG SET requirepass doctor-pw\r\nQUIT\r\n');
  const env = { CONSUL_HTTP_ADDR: consul.addr };
  const all = ['doctor', '--audit-redis', `redis://:doctor-pw@127.0.0.1:${redis.port}`, '--haproxy-admin-socket', haproxy.adminSocket, '--haproxy-master-socket', haproxy.masterSocket, '--docker-socket', dockerSocket];
  const ok = await gantryAsync(all, env);
  t.is(ok.status, 0, ok.stdout + ok.stderr);
  t.regex(ok.stdout, /^consul: ok /m);
  t.regex(ok.stdout, new RegExp(`^redis: ok redis://127\\.0\\.0\\.1:${redis.port} version=\\d`, 'm'));
  t.regex(ok.stdout, /^haproxy admin socket: ok .* version=2\.\d/m);
  t.regex(ok.stdout, /^haproxy master socket: ok .* workers=1/m);
  t.regex(ok.stdout, /^docker: ok .* version=\S+ api=\d/m);
  t.false(ok.stdout.includes('doctor-pw'));

  // only what the flags name is checked
  const consulOnly = await gantryAsync(['doctor'], env);
  t.is(consulOnly.stdout.trim().split('\n').length, 1);

  const wrong = await gantryAsync(['doctor', '--audit-redis', `redis://:not-the-pw@127.0.0.1:${redis.port}`, '--docker-socket', '/nonexistent/docker.sock'], env);
  t.is(wrong.status, 1);
  t.regex(wrong.stdout, /^redis: FAILED redis:\/\/127\.0\.0\.1:\d+: .*(WRONGPASS|invalid)/m);
  t.regex(wrong.stdout, /^docker: FAILED \/nonexistent\/docker\.sock: /m);
  t.regex(wrong.stdout, /^consul: ok /m, 'the others are still checked');
  t.false(`${wrong.stdout}${wrong.stderr}`.includes('not-the-pw'));
  await haproxy.stop();
  const down = await gantryAsync(['doctor', '--haproxy-master-socket', haproxy.masterSocket], env);
  t.is(down.status, 1);
  t.regex(down.stdout, /^haproxy master socket: FAILED /m);
});

test('URLs that can hold a password are never echoed in flag errors', (t) => {
  const cases: Array<[string[], NodeJS.ProcessEnv]> = [
    [['registrator', '--audit-redis', 'http://:hunter2@127.0.0.1:6379'], {}],
    [['registrator'], { GANTRY_AUDIT_REDIS: 'redis//user:hunter2@h' }],
    [['doctor', '--consul-addr', 'gopher://user:hunter2@127.0.0.1:8500'], {}],
    [['doctor', '--consul-addr', 'http://user:hunter2@[::nope'], {}],
    [['audit', 'log', '--audit-redis', 'http://:hunter2@127.0.0.1:6379'], {}],
    [['doctor', '--audit-redis', 'ftp://:hunter2@x'], {}],
  ];
  for (const [args, env] of cases) {
    const r = gantry(args, env);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /--(audit-redis|consul-addr)/, 'the flag is named');
    t.false(`${r.stdout}${r.stderr}`.includes('hunter2'), `${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`);
  }
});

test('a password in --audit-redis never reaches the registrator\'s log', async (t) => {
  const consul = await startConsul();
  track('consul (audit log)', consul);
  const reg = await startGantry('registrator', ['--audit-redis', 'redis://:hunter2@127.0.0.1:1', '--docker-socket', '/nonexistent/docker.sock', '--owner', 'secret-test', '--log-level', 'debug'], { env: { CONSUL_HTTP_ADDR: consul.addr }, waitHealthy: false });
  track('registrator (audit log)', reg);
  // positive signals first: the writer tried Redis, the Docker source tried its socket
  await waitUntil('audit redis error logged', async () => reg.logs().some((l) => l.msg === 'audit redis error'), { timeoutMs: 20_000 });
  await waitUntil('docker error logged', async () => reg.logs().some((l) => l.msg === 'docker unreachable; retrying'), { timeoutMs: 20_000 });
  // what the process itself wrote (the harness's first line of the file is its command line)
  const text = readFileSync(join(reg.dir, 'registrator.log'), 'utf8').split('\n').filter((l) => !l.startsWith('# ')).join('\n');
  t.regex(text, /redis:\/\/127\.0\.0\.1:1/);
  t.false(text.includes('hunter2'));
});

test('doctor --kubeconfig checks the kube-apiserver it names; a stopped one fails naming it', async (t) => {
  const consul = await startConsul();
  track('consul (doctor kube)', consul);
  const kube = await startKube();
  track('kube', kube);
  const env = { CONSUL_HTTP_ADDR: consul.addr };
  const ok = await gantryAsync(['doctor', '--kubeconfig', kube.kubeconfigPath], env);
  t.is(ok.status, 0, ok.stdout + ok.stderr);
  t.regex(ok.stdout, /^kubernetes: ok .* server=https:\/\/127\.0\.0\.1:\d+ version=v1\./m);
  const kept = join(tmpdir(), `gantry-doctor-kubeconfig-${process.pid}`);
  copyFileSync(kube.kubeconfigPath, kept); // stop() removes the engine's dir
  t.teardown(() => rmSync(kept, { force: true }));
  await kube.stop();
  const down = await gantryAsync(['doctor', '--kubeconfig', kept, '--timeout', '3s'], env);
  t.is(down.status, 1);
  t.regex(down.stdout, /^kubernetes: FAILED /m);
});
