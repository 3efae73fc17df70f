// `make up`: Gantry's main job on one machine. A Consul dev agent, HAProxy
// (master-worker, with its master CLI and admin sockets) and every Gantry part,
// against the local Docker engine. Prints where to look; Ctrl-C stops it all.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, systemBin } from '../test/harness/bins.ts';
import { spawnEngine, tcpReady, waitUntil, type ManagedProcess } from '../test/harness/process.ts';
import { startConsul } from '../test/harness/engines/consul.ts';
import { startRedis } from '../test/harness/engines/redis.ts';
import { startDnsmasq } from '../test/harness/engines/dnsmasq.ts';
import { startZooKeeper } from '../test/harness/engines/zookeeper.ts';
import { GANTRY_NODE_FLAGS } from '../test/harness/gantry.ts';
import { checkEnv } from '@gantry/templater';

const runDir = process.env.GANTRY_RUN_DIR ?? join(repoRoot, '.run');
const consulPort = Number(process.env.GANTRY_UP_CONSUL_PORT ?? 8500);
const statsPort = Number(process.env.GANTRY_UP_STATS_PORT ?? 8404);
const l7Bind = process.env.GANTRY_UP_L7_BIND ?? '127.0.0.1:8080';
const domain = process.env.GANTRY_UP_DOMAIN ?? 'gantry.local';
mkdirSync(runDir, { recursive: true });

const say = (line: string): void => { process.stdout.write(`${line}\n`); };
const procs: Array<{ name: string; stop: () => Promise<void> }> = [];

async function main(): Promise<void> {
  if (await tcpReady('127.0.0.1', consulPort)) {
    throw new Error(`port ${consulPort} is taken (another Consul or 'make up'?); set GANTRY_UP_CONSUL_PORT`);
  }
  const consul = await startConsul({ httpPort: consulPort, hcl: 'ui_config { enabled = true }' });
  procs.push({ name: 'consul', stop: () => consul.stop() });
  say(`consul    ${consul.addr}/ui   (log ${consul.proc.logFile})`);

  const haproxy = await startHAProxy(join(runDir, 'haproxy.cfg'));
  procs.push({ name: 'haproxy', stop: () => haproxy.stop() });
  say(`haproxy   http://127.0.0.1:${statsPort}/   (stats; master CLI ${join(runDir, 'haproxy-master.sock')})`);

  const redis = await startRedis();
  procs.push({ name: 'redis', stop: () => redis.stop() });
  say(`redis     ${redis.url}   (audit trail: gantry audit log --audit-redis ${redis.url})`);

  const hosts = join(runDir, 'hosts');
  writeFileSync(hosts, '');
  const dns = await startDnsmasq({ hostsFiles: [hosts] });
  procs.push({ name: 'dnsmasq', stop: () => dns.stop() });
  say(`dnsmasq   127.0.0.1:${dns.port}   (names the templater writes to ${hosts}; try: dig @127.0.0.1 -p ${dns.port} <service>.${domain})`);

  const zk = await startZooKeeper();
  procs.push({ name: 'zookeeper', stop: () => zk.stop() });
  say(`zookeeper ${zk.connectString}   (Dubbo providers under /dubbo ↔ Consul through the registrator's bridge)`);

  const env = { ...process.env, CONSUL_HTTP_ADDR: consul.addr };
  for (const part of parts({ redisUrl: redis.url, hosts, dnsmasqPid: dns.pidFile, zookeeper: zk.connectString })) {
    const p = spawnEngine(part.name, process.execPath, [...GANTRY_NODE_FLAGS, join(repoRoot, 'cli', 'bin', 'gantry.js'), ...part.args], { env, logFile: join(runDir, `${part.name}.log`) });
    procs.push({ name: part.name, stop: () => p.stop() });
    say(`${part.name.padEnd(9)} ${part.where}   (log ${p.logFile})`);
  }
  say(`config    node config-client/examples/watch-value.ts   (a KV prefix mirrored in memory; CONSUL_HTTP_ADDR=${consul.addr})`);
  say('');
  say(`Gantry is up. Logs in ${runDir}. Press Ctrl-C to stop everything.`);
  say('ready');
}

/** The Gantry parts `make up` runs; each part adds itself here when it exists. */
function parts(ctx: { redisUrl: string; hosts: string; dnsmasqPid: string; zookeeper: string }): Array<{ name: string; args: string[]; where: string }> {
  const registratorAdmin = process.env.GANTRY_UP_REGISTRATOR_ADMIN ?? '127.0.0.1:9101';
  const templaterAdmin = process.env.GANTRY_UP_TEMPLATER_ADMIN ?? '127.0.0.1:9102';
  const gatewayListen = process.env.GANTRY_UP_GATEWAY_LISTEN ?? '127.0.0.1:9080';
  const gatewayAdmin = process.env.GANTRY_UP_GATEWAY_ADMIN ?? '127.0.0.1:9103';
  return [
    {
      name: 'registrator',
      args: ['registrator', '--admin-addr', registratorAdmin, '--audit-redis', ctx.redisUrl, '--zookeeper', ctx.zookeeper],
      where: `http://${registratorAdmin}/metrics  (containers of the local Docker engine → Consul; Dubbo providers in ZooKeeper ↔ Consul)`,
    },
    {
      name: 'templater',
      args: [
        // a fresh dev stack starts with an empty catalog: render it anyway
        'templater', '--admin-addr', templaterAdmin, '--domain', domain, '--allow-empty',
        '--haproxy-cfg', join(runDir, 'haproxy.cfg'), '--haproxy-master-socket', join(runDir, 'haproxy-master.sock'),
        '--haproxy-admin-socket', join(runDir, 'haproxy-admin.sock'), '--haproxy-state-file', join(runDir, 'haproxy-server-state'),
        '--stats-bind', `127.0.0.1:${statsPort}`, '--l7-bind', l7Bind, '--l7-address', l7Bind.split(':')[0]!,
        '--hosts-file', ctx.hosts, '--dnsmasq-pid-file', ctx.dnsmasqPid, '--state-dir', join(runDir, 'templater'),
      ],
      where: `http://${templaterAdmin}/metrics  (Consul → HAProxy L7 on ${l7Bind} by Host <service>.${domain}, L4 VIPs, hosts file)`,
    },
    {
      // in front of the same containers as HAProxy: the same catalog, the same <service>.<domain> names
      name: 'gateway',
      args: ['gateway', '--listen', gatewayListen, '--admin-addr', gatewayAdmin, '--domain', domain, '--audit-redis', ctx.redisUrl, '--ratelimit-redis', ctx.redisUrl],
      where: `http://${gatewayAdmin}/routes  (Consul → L7 gateway on ${gatewayListen}: Host <service>.${domain}, urlprefix- tags, KV policy under gantry/gateway/)`,
    },
  ];
}

/** HAProxy from deploy/haproxy.cfg, its sockets and stats page moved to this run. */
async function startHAProxy(cfg: string): Promise<ManagedProcess> {
  const text = readFileSync(join(repoRoot, 'deploy', 'haproxy.cfg'), 'utf8')
    .replace('/var/run/haproxy/admin.sock', join(runDir, 'haproxy-admin.sock'))
    .replace('bind :8404', `bind 127.0.0.1:${statsPort}`);
  writeFileSync(cfg, text);
  const proc = spawnEngine('haproxy', systemBin('haproxy'), ['-W', '-S', `${join(runDir, 'haproxy-master.sock')},level,admin`, '-f', cfg], { logFile: join(runDir, 'haproxy.log'), env: checkEnv(process.env) });
  await waitUntil('haproxy', () => tcpReady('127.0.0.1', statsPort), { proc, timeoutMs: 15_000 });
  return proc;
}

async function stopAll(): Promise<void> {
  for (const p of procs.reverse()) await p.stop().catch(() => undefined);
}

process.once('SIGINT', () => { say('\nstopping…'); void stopAll().then(() => process.exit(0)); });
process.once('SIGTERM', () => { void stopAll().then(() => process.exit(0)); });
try {
  await main();
} catch (err) {
  process.stderr.write(`make up: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
}
