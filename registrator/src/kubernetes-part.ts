// The Kubernetes part of `gantry registrator --kubernetes`: informers → reconciler
// → catalog sink, with leader election so only one replica writes.
import { KubeConfig } from '@kubernetes/client-node';
import { asOwnerId, type Flags, type Logger, type ConsulClient } from '@gantry/core';
import type { Reconciler } from './reconciler.ts';
import { KubernetesSource } from './sources/kubernetes/source.ts';
import { defaultKubeSyncOptions, type NodePortSyncType } from './sources/kubernetes/mapping.ts';
import { ConsulCatalogSink } from './sinks/consul-catalog.ts';
import { LeaderElection } from './leader.ts';
import type { AuditWriter } from '@gantry/audit';
import type { Heartbeat } from '@gantry/audit/heartbeat';
import type { RegistratorMetrics } from './metrics.ts';
import { wire, type Part } from './wire.ts';

export async function startKubernetesPart(o: { f: Flags; log: Logger; m: RegistratorMetrics; audit: AuditWriter | undefined; consul: ConsulClient; host: string; signal: AbortSignal; heartbeat?: (owner: string, source: string) => Heartbeat | undefined }): Promise<{ part: Part; running: Array<Promise<void>> }> {
  const { f, log, m, audit, consul, host } = o;
  const running: Array<Promise<void>> = [];
  const cluster = f.str('k8s-cluster');
  const owner = f.optStr('owner') && !f.bool('docker') ? f.str('owner') : `kubernetes@${cluster}`;
  const kc = new KubeConfig();
  const kubeconfig = f.optStr('kubeconfig');
  if (kubeconfig) kc.loadFromFile(kubeconfig); else kc.loadFromDefault();
  const source = new KubernetesSource({
    ...defaultKubeSyncOptions(asOwnerId(owner), cluster), kc, log,
    defaultSync: f.bool('k8s-default-sync'), allowNamespaces: f.list('k8s-allow-namespaces'), denyNamespaces: f.list('k8s-deny-namespaces'),
    prefix: f.str('k8s-service-prefix'), namespaceSuffix: f.bool('k8s-namespace-suffix'), tag: f.str('k8s-tag'),
    nodePortSyncType: f.str('k8s-node-port-sync-type') as NodePortSyncType, loadBalancerEndpoints: f.bool('k8s-lb-endpoints'),
    onInformerRestart: (informer, reason) => m.streamRestarts.inc({ source: 'kubernetes', stream: informer, reason }),
    onEscaped: () => m.escaped.inc({ source: 'kubernetes', what: 'annotation' }),
  });
  const sink = new ConsulCatalogSink({ consul, node: f.optStr('k8s-consul-node') ?? `k8s-sync-${cluster}` });
  let leader: LeaderElection | undefined;
  const ref: { reconciler?: Reconciler } = {};
  if (f.bool('k8s-leader-election')) {
    leader = new LeaderElection({
      consul, key: `gantry/registrator/${cluster}/leader`, id: `${host}:${process.pid}`, ttlMs: f.ms('k8s-leader-ttl'), log,
      onChange: (isLeader) => { m.leader.set(isLeader ? 1 : 0); if (isLeader) ref.reconciler?.trigger('leader', true); },
    });
    running.push(leader.run(o.signal));
  } else m.leader.set(1);
  const l = leader;
  const r = wire('kubernetes', source, sink, owner, f, log, m, audit, l ? () => l.isLeader : undefined, o.heartbeat?.(owner, 'kubernetes'));
  ref.reconciler = r;
  const part: Part = { name: 'kubernetes', reconciler: r, healthy: () => source.synced };
  // nothing is reconciled (so nothing deleted) before every informer has listed once
  running.push(source.start(o.signal).then(() => { log.info({ cluster, owner }, 'kubernetes informers synced'); return r.run(o.signal); }));
  return { part, running };
}
