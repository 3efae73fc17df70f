// The ZooKeeper part of `gantry registrator --zookeeper`: one watched session,
// Dubbo providers → Consul (catalog, a synthetic node per bridge) and passing
// Consul instances tagged dubbo.interface=… → ephemeral provider nodes, both
// behind the same Consul lock the Kubernetes part uses, so only one bridge writes.
import { asOwnerId, UsageError, type Flags, type Logger, type ConsulClient } from '@gantry/core';
import type { Reconciler } from './reconciler.ts';
import { ZkSession } from './sources/zookeeper/session.ts';
import { ZooKeeperSource } from './sources/zookeeper/source.ts';
import { parseNameRule } from './sources/zookeeper/mapping.ts';
import { ConsulCatalogSink } from './sinks/consul-catalog.ts';
import { ConsulExportSource } from './sources/zookeeper/exports.ts';
import { ZooKeeperSink } from './sinks/zookeeper.ts';
import { LeaderElection } from './leader.ts';
import type { AuditWriter } from '@gantry/audit';
import type { RegistratorMetrics } from './metrics.ts';
import { wire, type Part } from './wire.ts';

export async function startZooKeeperPart(o: { f: Flags; log: Logger; m: RegistratorMetrics; audit: AuditWriter | undefined; consul: ConsulClient; host: string; signal: AbortSignal }): Promise<{ parts: Part[]; running: Array<Promise<void>> }> {
  const { f, consul, m, audit } = o;
  const name = f.str('zk-name');
  const log = o.log.child({ zookeeper: name });
  const roots = f.list('zk-roots');
  for (const r of roots) if (!r.startsWith('/') || r.length < 2 || r.endsWith('/')) throw new UsageError(`--zk-roots: ${JSON.stringify(r)} is not a ZooKeeper path like /dubbo`);
  const session = new ZkSession({ connect: f.str('zookeeper'), sessionTimeoutMs: f.ms('zk-session-timeout'), log });
  o.signal.addEventListener('abort', () => session.close(), { once: true });
  log.info({ zookeeper: session.where }, 'connecting to zookeeper');
  await session.start(o.signal);
  session.on('expired', () => m.streamRestarts.inc({ source: 'zookeeper', stream: 'session', reason: 'expired' }));

  const running: Array<Promise<void>> = [];
  const parts: Part[] = [];
  const reconcilers: Reconciler[] = [];
  const leader = new LeaderElection({
    consul, key: `gantry/registrator/zookeeper/${name}/leader`, id: `${o.host}:${process.pid}`, ttlMs: f.ms('zk-leader-ttl'), log,
    onChange: (isLeader) => { m.leader.set(isLeader ? 1 : 0); if (isLeader) for (const r of reconcilers) r.trigger('leader', true); },
  });
  running.push(leader.run(o.signal));

  if (f.bool('zk-import')) {
    const owner = `zookeeper@${name}`;
    const source = new ZooKeeperSource({
      session, roots, owner: asOwnerId(owner), nameRule: parseNameRule(f.str('zk-service-name')), log,
      onProblem: () => m.problems.inc({ source: 'zookeeper' }),
    });
    const sink = new ConsulCatalogSink({ consul, node: `zookeeper-sync-${name}` });
    const r = wire('zookeeper', source, sink, owner, f, log, m, audit, () => leader.isLeader);
    reconcilers.push(r);
    parts.push({ name: 'zookeeper', reconciler: r, healthy: () => session.connected });
    running.push(r.run(o.signal));
    log.info({ owner, roots }, 'zookeeper import started');
  }
  if (f.bool('zk-export')) {
    const owner = `zookeeper-export@${name}`;
    const source = new ConsulExportSource({ consul, owner: asOwnerId(owner), log, onProblem: () => m.problems.inc({ source: 'zookeeper-export' }) });
    const sink = new ZooKeeperSink({ session, root: roots[0]!, log });
    const r = wire('zookeeper-export', source, sink, owner, f, log, m, audit, () => leader.isLeader);
    reconcilers.push(r);
    parts.push({ name: 'zookeeper-export', reconciler: r, healthy: () => session.connected });
    running.push(r.run(o.signal));
    log.info({ owner, root: roots[0] }, 'zookeeper export started');
  }
  return { parts, running };
}
