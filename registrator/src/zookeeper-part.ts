// The ZooKeeper part of `gantry registrator --zookeeper`: one watched session,
// Dubbo providers → Consul (catalog, a synthetic node per bridge) and passing
// Consul instances tagged dubbo.interface=… → ephemeral provider nodes, both
// behind the same Consul lock the Kubernetes part uses, so only one bridge writes.
// Both reconcilers start a pass as soon as a watch fires (debounce 0, as the
// Docker part): what fires during a pass is taken together by the next one.
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
import type { Heartbeat } from '@gantry/audit/heartbeat';
import { entryFromProblem } from './audit-entry.ts';
import type { RegistratorMetrics } from './metrics.ts';
import { wire, type Part } from './wire.ts';

export async function startZooKeeperPart(o: { f: Flags; log: Logger; m: RegistratorMetrics; audit: AuditWriter | undefined; consul: ConsulClient; host: string; signal: AbortSignal; heartbeat?: (owner: string, source: string) => Heartbeat | undefined }): Promise<{ parts: Part[]; running: Array<Promise<void>> }> {
  const { f, consul, m, audit } = o;
  const name = f.str('zk-name');
  const log = o.log.child({ zookeeper: name });
  const roots = f.list('zk-roots');
  for (const r of roots) if (!r.startsWith('/') || r.length < 2 || r.endsWith('/')) throw new UsageError(`--zk-roots: ${JSON.stringify(r)} is not a ZooKeeper path like /dubbo`);
  const layout = f.str('zk-layout');
  const appRoots = layout === 'interface' ? [] : f.list('zk-app-roots');
  for (const r of appRoots) if (!r.startsWith('/') || r.length < 2 || r.endsWith('/')) throw new UsageError(`--zk-app-roots: ${JSON.stringify(r)} is not a ZooKeeper path like /services`);
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
      session, roots: layout === 'application' ? [] : roots, appRoots, owner: asOwnerId(owner), nameRule: parseNameRule(f.str('zk-service-name')), log,
      // a refused node: counted, and in the audit trail (`gantry audit drift` lists it) with its path and
      // why; its name is the interface (<root>/<interface>/providers) or the app (<app-root>/<app>)
      onProblem: (path, node, reason) => {
        m.problems.inc({ source: 'zookeeper' });
        audit?.append(entryFromProblem(owner, 'zookeeper', { container: path, name: (path.endsWith('/providers') ? path.split('/').at(-2) : path.split('/').at(-1)) ?? '', where: node, reason }));
      },
    });
    // a provider is there or not: no per-instance check (see CatalogSinkOptions.sourceCheck)
    const sink = new ConsulCatalogSink({ consul, node: `zookeeper-sync-${name}`, sourceCheck: false });
    const r = wire('zookeeper', source, sink, owner, f, log, m, audit, () => leader.isLeader, o.heartbeat?.(owner, 'zookeeper'), 0);
    reconcilers.push(r);
    parts.push({ name: 'zookeeper', reconciler: r, healthy: () => session.connected });
    running.push(r.run(o.signal));
    log.info({ owner, layout, roots: layout === 'application' ? [] : roots, appRoots }, 'zookeeper import started');
  }
  if (f.bool('zk-export')) {
    const owner = `zookeeper-export@${name}`;
    const source = new ConsulExportSource({
      consul, owner: asOwnerId(owner), log,
      onProblem: (service, reason) => {
        m.problems.inc({ source: 'zookeeper-export' });
        audit?.append(entryFromProblem(owner, 'zookeeper-export', { container: `consul:${service}`, name: service, where: `service ${service}`, reason }));
      },
    });
    const sink = new ZooKeeperSink({ session, root: roots[0]!, log });
    const r = wire('zookeeper-export', source, sink, owner, f, log, m, audit, () => leader.isLeader, o.heartbeat?.(owner, 'zookeeper-export'), 0);
    reconcilers.push(r);
    parts.push({ name: 'zookeeper-export', reconciler: r, healthy: () => session.connected });
    running.push(r.run(o.signal));
    log.info({ owner, root: roots[0] }, 'zookeeper export started');
  }
  return { parts, running };
}
