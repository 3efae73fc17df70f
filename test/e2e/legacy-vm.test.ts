// The mission's main path, end to end: a container started with a published
// port is registered by `gantry registrator`; `gantry templater` renders HAProxy
// and the hosts file of the dnsmasq a "legacy VM" (a network namespace) resolves
// through; from inside the VM, `curl http://orders.gantry.test/` answers from the
// container, and a Redis container is reached as dev1-redis.gantry.test:6379
// through its L4 VIP. When a container stops, no request reaches it after its
// deregistration.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import { manageEngines } from '../harness/ava.ts';
import { startConsul } from '../harness/engines/consul.ts';
import { startHAProxy } from '../harness/engines/haproxy.ts';
import { startDnsmasq } from '../harness/engines/dnsmasq.ts';
import { ensureDocker, newRunId, runContainer, cleanupContainers, RUN_LABEL } from '../harness/engines/docker.ts';
import { createLegacyVm } from '../harness/netns.ts';
import { spawnEngine, tempDir, removeDir, waitUntil } from '../harness/process.ts';
import { repoRoot } from '../harness/bins.ts';
import { bootstrapConfig } from '../../templater/test/helpers.ts';

const track = manageEngines(test);
const REDIS_IMAGE = 'gantry/redis-e2e:test';

/** a Redis image made from this host's redis-server and the libraries it links (no registry needed) */
function ensureRedisImage(): void {
  try {
    execFileSync('docker', ['image', 'inspect', REDIS_IMAGE], { stdio: 'ignore' });
    return;
  } catch { /* build it */ }
  const libs = execFileSync('ldd', ['/usr/bin/redis-server'], { encoding: 'utf8' }).match(/\/\S+/g) ?? [];
  const files = ['/usr/bin/redis-server', ...new Set(libs)].join(' ');
  execSync(`tar -chf - ${files} 2>/dev/null | docker import -c 'CMD ["/usr/bin/redis-server"]' - ${REDIS_IMAGE}`, { stdio: 'ignore', shell: '/bin/bash' });
}

function gantry(name: string, dir: string, args: string[]): ReturnType<typeof spawnEngine> {
  return spawnEngine(name, process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), ...args], { logFile: join(dir, `${name}.log`) });
}

async function httpd(docker: Docker, runId: string, name: string, body: string): Promise<Docker.Container> {
  return runContainer(docker, {
    runId,
    name: `${runId}-${name}`,
    env: { SERVICE_NAME: 'orders' },
    cmd: ['sh', '-c', `mkdir -p /www && echo ${body} > /www/index.html && exec httpd -f -p 80 -h /www`],
    publish: { '80/tcp': '0' },
  });
}

test('a legacy VM reaches containers by name: L7 through HAProxy, Redis through its L4 VIP, and a stopped container gets no request after its deregistration', async (t) => {
  const docker = await ensureDocker();
  ensureRedisImage();
  const runId = newRunId();
  const dir = tempDir('e2e');
  const vm = await createLegacyVm();
  const pool = `10.251.${randomBytes(1)[0]!}.0/24`;
  t.teardown(async () => {
    await cleanupContainers(docker, runId);
    await vm.destroy();
    const lo = execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' });
    const prefix = pool.split('.').slice(0, 3).join('.') + '.';
    for (const m of lo.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)) if (m[1]!.startsWith(prefix)) execFileSync('ip', ['addr', 'del', `${m[1]}/32`, 'dev', 'lo']);
    removeDir(dir);
  });

  const consul = await startConsul();
  track('consul', consul);
  const haproxy = await startHAProxy({ config: bootstrapConfig });
  track('haproxy', haproxy);
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '');
  // the VM's resolver: dnsmasq on the host end of the veth, port 53
  const dnsmasq = await startDnsmasq({ hostsFiles: [hostsFile], listenAddress: vm.hostAddr, port: 53 });
  track('dnsmasq', dnsmasq);
  vm.setResolver(vm.hostAddr);
  await vm.addRoute(pool);

  const registrator = gantry('registrator', dir, ['registrator', '--consul-addr', consul.addr, '--admin-addr', '127.0.0.1:0', '--require-label', `${RUN_LABEL}=${runId}`, '--resync', '5s']);
  track('registrator', registrator);
  const templater = gantry('templater', dir, [
    'templater', '--consul-addr', consul.addr, '--admin-addr', '127.0.0.1:0',
    '--haproxy-cfg', haproxy.cfgFile, '--haproxy-master-socket', haproxy.masterSocket, '--haproxy-admin-socket', haproxy.adminSocket,
    '--haproxy-state-file', join(dir, 'server-state'),
    '--hosts-file', hostsFile, '--dnsmasq-pid-file', dnsmasq.pidFile,
    '--domain', 'gantry.test', '--l7-bind', `${vm.hostAddr}:80`, '--l7-address', vm.hostAddr,
    '--vip-pool', pool, '--vip-interface', 'lo', '--state-dir', join(dir, 'state'), '--wait', '20ms:300ms',
  ]);
  track('templater', templater);

  // L7: two containers of "orders"
  await httpd(docker, runId, 'o1', 'from-o1');
  await httpd(docker, runId, 'o2', 'from-o2');
  const curl = async (): Promise<string> => {
    const r = await vm.exec(['curl', '-sS', '-m', '3', 'http://orders.gantry.test/']);
    return r.code === 0 ? r.stdout.trim() : `ERR ${r.stderr.trim()}`;
  };
  await waitUntil('orders from the VM', async () => (await curl()).startsWith('from-o'), { timeoutMs: 60_000, intervalMs: 200 });
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) seen.add(await curl());
  t.deepEqual([...seen].sort(), ['from-o1', 'from-o2']);
  const resolved = await vm.exec(['getent', 'hosts', 'orders.gantry.test']);
  t.regex(resolved.stdout, new RegExp(`^${vm.hostAddr.replace(/\./g, '\\.')}\\s+orders\\.gantry\\.test`));

  // L4: a Redis container, tenant dev1, served on its own VIP on Redis's port
  const redis = await docker.createContainer({
    Image: REDIS_IMAGE, name: `${runId}-redis`,
    Cmd: ['/usr/bin/redis-server', '--port', '6379', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'],
    Env: ['SERVICE_NAME=redis', 'SERVICE_TAGS=gantry.tcp=6379,gantry.tenant=dev1'],
    Labels: { [RUN_LABEL]: runId },
    ExposedPorts: { '6379/tcp': {} },
    HostConfig: { PortBindings: { '6379/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await redis.start();
  const ping = async (): Promise<string> => (await vm.exec(['redis-cli', '-h', 'dev1-redis.gantry.test', '-p', '6379', 'ping'], { timeoutMs: 5000 })).stdout.trim();
  await waitUntil('redis from the VM', async () => (await ping()) === 'PONG', { timeoutMs: 60_000, intervalMs: 200 });
  const vip = (await vm.exec(['getent', 'hosts', 'dev1-redis.gantry.test'])).stdout.split(/\s+/)[0]!;
  t.true(vip.startsWith(pool.split('.').slice(0, 3).join('.')), `${vip} in ${pool}`);
  t.is((await vm.exec(['redis-cli', '-h', 'dev1-redis.gantry.test', '-p', '6379', 'set', 'k', 'v'])).stdout.trim(), 'OK');
  t.is((await vm.exec(['redis-cli', '-h', 'dev1-redis.gantry.test', '-p', '6379', 'get', 'k'])).stdout.trim(), 'v');

  // o1 stops: once Consul no longer has it and HAProxy has put its slot in maintenance, it gets nothing
  const o1 = docker.getContainer(`${runId}-o1`);
  const o1Port = Number((await o1.inspect()).NetworkSettings.Ports['80/tcp']?.[0]?.HostPort);
  await o1.stop({ t: 1 });
  await waitUntil('o1 deregistered', async () => {
    const res = await fetch(`${consul.addr}/v1/catalog/service/orders`);
    const list = (await res.json()) as Array<{ ServicePort: number }>;
    return list.length === 1 && list.every((s) => s.ServicePort !== o1Port);
  }, { timeoutMs: 30_000 });
  const slotOf = async (): Promise<{ name: string; maint: boolean } | undefined> => {
    const text = await haproxy.runtime('show servers state l7_orders.gantry.test');
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[1] === 'l7_orders.gantry.test' && Number(f[18]) === o1Port) return { name: f[3]!, maint: (Number(f[6]) & 1) === 1 };
    }
    return undefined;
  };
  const slot = await waitUntil('o1 slot in maintenance', async () => { const s = await slotOf(); return s?.maint ? s : undefined; }, { timeoutMs: 20_000 });
  const sessions = async (): Promise<number> => {
    const csv = await haproxy.runtime('show stat');
    const row = csv.split('\n').find((l) => l.startsWith(`l7_orders.gantry.test,${slot.name},`));
    return Number(row?.split(',')[7]); // stot
  };
  const before = await sessions();
  const after = new Set<string>();
  for (let i = 0; i < 20; i++) after.add(await curl());
  t.deepEqual([...after], ['from-o2']);
  t.is(await sessions(), before, 'no session to the stopped container after its deregistration');
});
