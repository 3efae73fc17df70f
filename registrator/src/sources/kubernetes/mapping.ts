// One Kubernetes Service (with its EndpointSlices and the Nodes) → the Consul
// instances it stands for, per Service type, as consul-k8s catalog sync users
// expect. Pure: no I/O, so every rule is a table test.
import type { V1Service, V1EndpointSlice, V1Node, V1ServicePort } from '@kubernetes/client-node';
import { escapeConsulId, escapeConsulServiceName, asInstanceId, asServiceName, META, type ServiceInstance, type OwnerId, type HealthStatus } from '@gantry/core';
import { readAnnotations, AnnotationError, type ServiceAnnotations } from './annotations.ts';

export type NodePortSyncType = 'ExternalOnly' | 'ExternalFirst' | 'InternalOnly';

export interface KubeSyncOptions {
  owner: OwnerId;
  /** the cluster's name, in every record's meta and in its ID */
  cluster: string;
  /** sync Services without a service-sync annotation */
  defaultSync: boolean;
  /** namespaces to sync ('*' = all); deny wins */
  allowNamespaces: string[];
  denyNamespaces: string[];
  /** prefix for every Consul service name */
  prefix: string;
  /** append -<namespace> to every Consul service name */
  namespaceSuffix: boolean;
  /** tag added to every instance */
  tag: string;
  nodePortSyncType: NodePortSyncType;
  /** LoadBalancer Services: register their endpoints instead of ingress addresses */
  loadBalancerEndpoints: boolean;
}

export const defaultKubeSyncOptions = (owner: OwnerId, cluster = 'default'): KubeSyncOptions => ({
  owner, cluster, defaultSync: true, allowNamespaces: ['*'], denyNamespaces: ['kube-system', 'kube-public'],
  prefix: '', namespaceSuffix: false, tag: 'k8s', nodePortSyncType: 'ExternalFirst', loadBalancerEndpoints: false,
});

export type MappingResult =
  | { kind: 'skip'; reason: string }
  | { kind: 'error'; error: AnnotationError }
  | { kind: 'instances'; instances: ServiceInstance[]; escaped: ServiceAnnotations['rewritten'] };

export function namespaceAllowed(ns: string, o: KubeSyncOptions): boolean {
  if (o.denyNamespaces.includes(ns) || o.denyNamespaces.includes('*')) return false;
  return o.allowNamespaces.includes('*') || o.allowNamespaces.includes(ns);
}

function nodeAddress(node: V1Node | undefined, type: NodePortSyncType): string | undefined {
  const addrs = node?.status?.addresses ?? [];
  const ext = addrs.find((a) => a.type === 'ExternalIP')?.address;
  const int = addrs.find((a) => a.type === 'InternalIP')?.address;
  if (type === 'ExternalOnly') return ext;
  if (type === 'InternalOnly') return int;
  return ext ?? int;
}

interface Target { address: string; port: number; status: HealthStatus; pod?: string; node?: string; zone?: string }

export function mapService(svc: V1Service, slices: V1EndpointSlice[], nodes: ReadonlyMap<string, V1Node>, o: KubeSyncOptions): MappingResult {
  const ns = svc.metadata?.namespace ?? 'default';
  const svcName = svc.metadata?.name ?? '';
  if (!namespaceAllowed(ns, o)) return { kind: 'skip', reason: `namespace ${ns} not allowed` };
  let ann: ServiceAnnotations;
  try {
    ann = readAnnotations(svc.metadata?.annotations);
  } catch (err) {
    if (err instanceof AnnotationError) return { kind: 'error', error: err };
    throw err;
  }
  if (!(ann.sync ?? o.defaultSync)) return { kind: 'skip', reason: 'service-sync is off' };
  const type = svc.spec?.type ?? 'ClusterIP';
  const ports = svc.spec?.ports ?? [];

  let chosen: V1ServicePort[];
  if (ann.port !== undefined) {
    const p = ports.find((x) => x.name === ann.port || String(x.port) === ann.port);
    if (!p) return { kind: 'error', error: new AnnotationError('service-port', ann.port, `no port named or numbered so on Service ${ns}/${svcName}`) };
    chosen = [p];
  } else chosen = ann.perPort ? ports : ports.slice(0, 1);

  const base = escapeConsulServiceName(`${o.prefix}${ann.name ?? svcName}${o.namespaceSuffix ? `-${ns}` : ''}`);
  if (!base.ok) return { kind: 'error', error: new AnnotationError('service-name', ann.name ?? svcName, base.reason) };
  const escaped = [...ann.rewritten];
  // the annotation's own rewrite is already listed; the Service name, prefix or suffix may need one too
  if (base.changed) {
    escaped.push({ annotation: ann.name !== undefined ? 'service-name' : 'metadata.name', original: `${o.prefix}${ann.name ?? svcName}${o.namespaceSuffix ? `-${ns}` : ''}`, result: base.value });
  }

  const portMeta: Record<string, string> = {};
  for (const p of ports) portMeta[`port-${p.name || String(p.port)}`.replace(/[^A-Za-z0-9_-]/g, '_')] = String(p.port);

  const instances: ServiceInstance[] = [];
  const units: Array<V1ServicePort | undefined> = chosen.length ? chosen : [undefined];
  for (const sp of units) {
    const name = ann.perPort && sp && ports.length > 1 ? escapeConsulServiceName(`${base.value}-${sp.name || sp.port}`) : base;
    if (!name.ok) return { kind: 'error', error: new AnnotationError('service-name', base.value, name.reason) };
    for (const t of targets(svc, type, sp, slices, nodes, o)) {
      const id = escapeConsulId(`k8s:${o.cluster}:${ns}:${svcName}:${sp?.name || sp?.port || 0}:${t.address}:${t.port}`);
      if (!id.ok) continue;
      const meta: Record<string, string> = {
        ...ann.meta,
        ...portMeta,
        [META.owner]: o.owner,
        [META.source]: 'kubernetes',
        [META.origin]: `${o.cluster}/${ns}/${svcName}`,
        'external-source': 'kubernetes',
        'k8s-cluster': o.cluster,
        'k8s-namespace': ns,
        'k8s-service': svcName,
        'k8s-service-type': type,
      };
      if (t.pod) meta['k8s-pod'] = t.pod;
      if (t.node) meta['k8s-node'] = t.node;
      if (t.zone) meta['k8s-zone'] = t.zone;
      instances.push({
        id: asInstanceId(id.value),
        name: asServiceName(name.value),
        address: t.address,
        port: t.port,
        tags: [...new Set([...(o.tag ? [o.tag] : []), ...ann.tags])],
        meta,
        checks: [],
        status: t.status,
        origin: { source: 'kubernetes', ref: `${ns}/${svcName}`, host: o.cluster, ...(t.pod ? { name: t.pod } : {}) },
        ...(ann.weight ? { weights: { passing: ann.weight, warning: 1 } } : {}),
      });
    }
  }
  return { kind: 'instances', instances, escaped };
}

/** The addresses a Service is reached at, by type. */
function targets(svc: V1Service, type: string, sp: V1ServicePort | undefined, slices: V1EndpointSlice[], nodes: ReadonlyMap<string, V1Node>, o: KubeSyncOptions): Target[] {
  const port = sp?.port ?? 0;
  if (type === 'ExternalName') {
    const host = svc.spec?.externalName;
    return host ? [{ address: host, port, status: 'passing' }] : [];
  }
  const externalIPs = svc.spec?.externalIPs ?? [];
  if (externalIPs.length) return externalIPs.map((address) => ({ address, port, status: 'passing' }));
  if (type === 'LoadBalancer' && !o.loadBalancerEndpoints) {
    return (svc.status?.loadBalancer?.ingress ?? [])
      .map((i) => i.ip ?? i.hostname)
      .filter((a): a is string => Boolean(a))
      .map((address) => ({ address, port, status: 'passing' }));
  }
  const eps = endpoints(sp, slices);
  if (type === 'NodePort') {
    const nodePort = sp?.nodePort;
    if (!nodePort) return [];
    const byNode = new Map<string, Target>();
    for (const e of eps) {
      if (!e.node) continue;
      const address = nodeAddress(nodes.get(e.node), o.nodePortSyncType);
      if (!address) continue;
      const prev = byNode.get(e.node);
      // a node is passing when any of its endpoints is ready
      if (!prev || (prev.status !== 'passing' && e.status === 'passing')) byNode.set(e.node, { address, port: nodePort, status: e.status, node: e.node, ...(e.zone ? { zone: e.zone } : {}) });
    }
    return [...byNode.values()];
  }
  return eps; // ClusterIP, headless, LoadBalancer with endpoints
}

/** Endpoints of the slices for one Service port: ready → passing, not ready → critical, terminating → gone. */
function endpoints(sp: V1ServicePort | undefined, slices: V1EndpointSlice[]): Target[] {
  const out = new Map<string, Target>();
  for (const slice of slices) {
    const slicePort = (slice.ports ?? []).find((p) => (sp?.name ? p.name === sp.name : true));
    const port = slicePort?.port ?? (typeof sp?.targetPort === 'number' ? sp.targetPort : sp?.port);
    if (!port) continue;
    for (const ep of slice.endpoints ?? []) {
      if (ep.conditions?.terminating) continue;
      const ready = ep.conditions?.ready ?? true; // nil means ready (API docs)
      for (const address of ep.addresses ?? []) {
        const key = `${address}:${port}`;
        const t: Target = { address, port, status: ready ? 'passing' : 'critical' };
        if (ep.targetRef?.kind === 'Pod' && ep.targetRef.name) t.pod = ep.targetRef.name;
        if (ep.nodeName) t.node = ep.nodeName;
        if (ep.zone) t.zone = ep.zone;
        const prev = out.get(key);
        if (!prev || (prev.status !== 'passing' && t.status === 'passing')) out.set(key, t);
      }
    }
  }
  return [...out.values()];
}
