// The mission's Dubbo bridge, end to end, with real engines only:
//  - a container started with a dubbo label is seen by a Dubbo consumer on a
//    "VM" (a Java program on Apache Curator, the client Dubbo 2.7+ uses, watching
//    /dubbo/<interface>/providers) with the host IP and published port, and
//    disappears from its view when the container stops;
//  - a "VM" provider registered the way Dubbo 2.7 registers (an ephemeral node
//    with the URL-encoded URL) is reached from a container by the DNS name the
//    templater serves (dnsmasq → HAProxy L7 → the provider).
import test from 'ava';
import { createServer } from 'node:http';
import { execFileSync, execSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConsul } from '@gantry/core';
import { manageEngines } from '../harness/ava.ts';
import { startConsul } from '../harness/engines/consul.ts';
import { startZooKeeper } from '../harness/engines/zookeeper.ts';
import { connectZk } from '../harness/engines/zookeeper-client.ts';
import { startDubboConsumer } from '../harness/engines/zookeeper-consumer.ts';
import { startHAProxy } from '../harness/engines/haproxy.ts';
import { startDnsmasq } from '../harness/engines/dnsmasq.ts';
import { ensureDocker, newRunId, runContainer, cleanupContainers, RUN_LABEL } from '../harness/engines/docker.ts';
import { startGantry } from '../harness/gantry.ts';
import { tempDir, removeDir, waitUntil, freePort } from '../harness/process.ts';
import { bootstrapConfig } from '../../templater/test/helpers.ts';
import { encodeNodeName } from '../../registrator/src/sources/zookeeper/dubbo-url.ts';

const track = manageEngines(test);
const CURL_IMAGE = 'gantry/curl-e2e:test';

/**
 * A client image made from this host's curl and the libraries it links (no registry needed);
 * busybox's wget in the test image is static glibc and crashes resolving names.
 */
function ensureCurlImage(): void {
  try {
    execFileSync('docker', ['image', 'inspect', CURL_IMAGE], { stdio: 'ignore' });
    return;
  } catch { /* build it */ }
  const libs = execFileSync('ldd', ['/usr/bin/curl'], { encoding: 'utf8' }).match(/\/\S+/g) ?? [];
  const files = ['/usr/bin/curl', ...new Set(libs)].join(' ');
  execSync(`tar -chf - ${files} 2>/dev/null | docker import -c 'ENTRYPOINT ["/usr/bin/curl"]' - ${CURL_IMAGE}`, { stdio: 'ignore', shell: '/bin/bash' });
}

test.serial('a container with a dubbo label appears to a Curator consumer with the host IP and published port, and disappears when it stops', async (t) => {
  const docker = await ensureDocker();
  const runId = newRunId();
  t.teardown(async () => { await cleanupContainers(docker, runId); });
  const [consulEngine, zk] = await Promise.all([startConsul(), startZooKeeper()]);
  track('consul', consulEngine);
  track('zookeeper', zk);
  const consumer = await startDubboConsumer(zk.connectString, 'com.acme.E2eOrders');
  track('dubbo consumer', consumer);
  t.deepEqual(consumer.providers(), []);
  const g = await startGantry('registrator', [
    '--consul-addr', consulEngine.addr, '--require-label', `${RUN_LABEL}=${runId}`, '--resync', '5s',
    '--zookeeper', zk.connectString, '--zk-name', `e2e-${runId}`, '--zk-leader-ttl', '2s',
  ]);
  track('registrator', g);

  const c = await runContainer(docker, {
    runId, name: `${runId}-orders`, env: { SERVICE_NAME: 'orders', SERVICE_TAGS: 'dubbo.interface=com.acme.E2eOrders,dubbo.version=2.0.0' },
    cmd: ['sh', '-c', 'mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www'], publish: { '80/tcp': '0' },
  });
  const binding = (await c.inspect()).NetworkSettings.Ports['80/tcp']?.[0];
  const hostPort = Number(binding?.HostPort);
  t.true(hostPort > 0);
  const seen = await waitUntil('the consumer sees the container', async () => { const p = consumer.providers(); return p.length === 1 ? p[0] : undefined; }, { timeoutMs: 60_000, intervalMs: 200 });
  const url = new URL(seen.replace(/^dubbo:/, 'http:'));
  t.is(url.hostname, binding!.HostIp, 'the host IP the port is published on');
  t.is(Number(url.port), hostPort, 'the published port');
  t.true(seen.startsWith(`dubbo://${binding!.HostIp}:${hostPort}/com.acme.E2eOrders?`), seen);
  t.is(url.searchParams.get('interface'), 'com.acme.E2eOrders');
  t.is(url.searchParams.get('version'), '2.0.0');
  t.is(url.searchParams.get('side'), 'provider');
  t.is(url.searchParams.get('application'), 'orders');

  await c.stop({ t: 1 });
  await waitUntil('the consumer sees it go', async () => consumer.providers().length === 0, { timeoutMs: 60_000, intervalMs: 200 });
  t.pass();
});

test.serial('a VM provider registered as Dubbo 2.7 does is reached from a container by the templater\'s DNS name', async (t) => {
  const docker = await ensureDocker();
  ensureCurlImage();
  const runId = newRunId();
  const dir = tempDir('dubbo-e2e');
  t.teardown(async () => { await cleanupContainers(docker, runId); removeDir(dir); });
  // the host's address on the default bridge: its gateway, else the subnet's first address (docker0)
  const net = await docker.getNetwork('bridge').inspect() as { IPAM: { Config: Array<{ Gateway?: string; Subnet?: string }> } };
  const cfg = net.IPAM.Config.find((x) => x.Gateway ?? x.Subnet);
  const gateway = cfg?.Gateway ?? cfg?.Subnet?.replace(/\.0\/\d+$/, '.1');
  if (!gateway || !/^\d+\.\d+\.\d+\.1$/.test(gateway)) throw new Error(`docker: no address of the host on the default bridge (${JSON.stringify(net.IPAM.Config)})`);

  // the "VM" provider: an HTTP (Dubbo rest) service on this host
  const vm = createServer((_req, res) => { res.end('stock-from-vm\n'); });
  await new Promise<void>((r) => vm.listen(0, '127.0.0.1', r));
  t.teardown(() => vm.close());
  const vmPort = (vm.address() as { port: number }).port;

  const [consulEngine, zk] = await Promise.all([startConsul(), startZooKeeper()]);
  track('consul', consulEngine);
  track('zookeeper', zk);
  const haproxy = await startHAProxy({ config: bootstrapConfig });
  track('haproxy', haproxy);
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '');
  const dnsmasq = await startDnsmasq({ hostsFiles: [hostsFile], listenAddress: gateway, port: 53 });
  track('dnsmasq', dnsmasq);
  const l7Port = await freePort(gateway);

  // Dubbo 2.7's ZookeeperRegistry: persistent /dubbo/<interface>/providers, an ephemeral URL-encoded child
  const provider = await connectZk(zk.connectString, { sessionTimeout: 30_000 });
  t.teardown(() => provider.close());
  const iface = 'com.acme.StockService';
  await provider.mkdirp(`/dubbo/${iface}/providers`);
  await provider.create(`/dubbo/${iface}/providers/${encodeNodeName(`rest://127.0.0.1:${vmPort}/${iface}?anyhost=true&application=stock&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface=${iface}&methods=get&pid=1&release=2.7.8&side=provider&timestamp=1600000000000`)}`);

  const g = await startGantry('registrator', ['--docker=false', '--consul-addr', consulEngine.addr, '--zookeeper', zk.connectString, '--zk-name', `vm-${runId}`, '--zk-leader-ttl', '2s', '--zk-export=false']);
  track('registrator', g);
  const templater = await startGantry('templater', [
    '--consul-addr', consulEngine.addr, '--haproxy-cfg', haproxy.cfgFile, '--haproxy-master-socket', haproxy.masterSocket, '--haproxy-admin-socket', haproxy.adminSocket,
    '--haproxy-state-file', join(dir, 'server-state'), '--hosts-file', hostsFile, '--dnsmasq-pid-file', dnsmasq.pidFile,
    '--domain', 'gantry.test', '--l7-bind', `${gateway}:${l7Port}`, '--l7-address', gateway, '--vip-manage=false',
    '--state-dir', join(dir, 'state'), '--wait', '20ms:300ms', '--allow-empty',
  ], { waitHealthy: false });
  track('templater', templater);
  const consul = createConsul({ addr: consulEngine.addr });
  t.teardown(() => consul.close());
  await waitUntil('the VM provider in Consul', async () => ((await consul.request<unknown[]>('GET', '/v1/catalog/service/com-acme-stockservice')).body ?? []).length === 1, { timeoutMs: 30_000 });

  // a container resolving through the templater's dnsmasq
  const fetchFromContainer = async (): Promise<string> => {
    const c = await docker.createContainer({
      Image: CURL_IMAGE, name: `${runId}-client-${Date.now()}`, Labels: { [RUN_LABEL]: runId },
      Cmd: ['-sS', '-m', '3', `http://com-acme-stockservice.gantry.test:${l7Port}/`],
      HostConfig: { Dns: [gateway] },
    });
    await c.start();
    await c.wait();
    const logs = await c.logs({ stdout: true, stderr: true });
    await c.remove({ force: true });
    return logs.toString('utf8');
  };
  let last = '';
  t.teardown(() => { if (!last.includes('stock-from-vm')) t.log(`last container output: ${last}\nhosts file: ${readFileSync(hostsFile, 'utf8')}`); });
  const answer = await waitUntil('the container reaches the VM provider by name', async () => { last = await fetchFromContainer(); return last.includes('stock-from-vm') ? last : undefined; }, { timeoutMs: 90_000, intervalMs: 500 });
  t.regex(answer, /stock-from-vm/);
});
