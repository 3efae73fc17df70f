// `make up`'s runner (scripts/up.ts) brings the stack up, answers, and leaves
// nothing behind on Ctrl-C.
import test from 'ava';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { repoRoot } from './harness/bins.ts';
import { freePorts, tempDir, removeDir, waitUntil } from './harness/process.ts';

/**
 * A GET on a connection of its own. The templater reloads HAProxy while the test runs: an idle
 * kept-alive connection is closed by the old worker, and a request fetch() sends on it as it
 * closes fails (a race any HTTP client has with keep-alive, not a connection the reload refused).
 */
function get(port: number | undefined, path: string, host?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('scripts/up.ts starts Consul (UI), HAProxy (stats), ZooKeeper and the bridge, and SIGINT stops them all', async (t) => {
  const [consulPort, statsPort, regPort, tplPort, l7Port] = await freePorts(5);
  const runDir = tempDir('up');
  t.teardown(() => removeDir(runDir));
  const child = spawn(process.execPath, [join(repoRoot, 'scripts', 'up.ts')], {
    env: { ...process.env, GANTRY_RUN_DIR: runDir, GANTRY_UP_CONSUL_PORT: String(consulPort), GANTRY_UP_STATS_PORT: String(statsPort), GANTRY_UP_REGISTRATOR_ADMIN: `127.0.0.1:${regPort}`, GANTRY_UP_TEMPLATER_ADMIN: `127.0.0.1:${tplPort}`, GANTRY_UP_L7_BIND: `127.0.0.1:${l7Port}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => { child.kill('SIGKILL'); });
  await waitUntil('make up ready', async () => out.includes('\nready\n') || (child.exitCode !== null && Promise.reject(new Error(out))), { timeoutMs: 60_000 });
  t.regex(out, new RegExp(`consul +http://127\\.0\\.0\\.1:${consulPort}/ui`));
  t.is((await get(consulPort, '/ui/')).status, 200);
  t.is((await get(statsPort, '/')).status, 200);
  t.regex(out, /Press Ctrl-C to stop/);
  // the registrator is up against the local Docker engine
  const health = await waitUntil('registrator healthy', async () => {
    const res = await get(regPort, '/healthz');
    const body = res.status === 200 ? (JSON.parse(res.body) as Record<string, unknown>) : undefined;
    return body && 'zookeeper-export' in body ? body : undefined; // the bridge joins once its ZooKeeper session is up
  }, { timeoutMs: 30_000 });
  t.is(health.docker, 'ok');
  // and bridges the ZooKeeper `make up` runs
  t.regex(out, /zookeeper 127\.0\.0\.1:\d+/);
  t.is(health.zookeeper, 'ok');
  t.is(health['zookeeper-export'], 'ok');
  // the templater rendered HAProxy: the L7 frontend answers (no such service: not a 200)
  await waitUntil('templater healthy', async () => (await get(tplPort, '/healthz')).status === 200, { timeoutMs: 30_000 });
  const l7 = await waitUntil('L7 frontend', async () => (await get(l7Port, '/', 'nothing.gantry.local')).status, { timeoutMs: 30_000 });
  t.not(l7, 200);
  child.kill('SIGINT');
  t.is(await exited, 0);
  await t.throwsAsync(get(consulPort, '/v1/status/leader'));
  await t.throwsAsync(get(statsPort, '/'));
  await t.throwsAsync(get(regPort, '/healthz'));
  await t.throwsAsync(get(tplPort, '/healthz'));
  await t.throwsAsync(get(l7Port, '/'));
});
