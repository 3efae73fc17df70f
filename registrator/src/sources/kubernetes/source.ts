// The Kubernetes source: informers on Services, EndpointSlices and Nodes; the
// desired instances are computed from their stores. It reports nothing until
// every informer's first full list is in, so nothing valid is reaped at start.
import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1Service, type V1EndpointSlice, type V1Node } from '@kubernetes/client-node';
import { errorMessage, escapeLogField, type Logger, type ServiceInstance } from '@gantry/core';
import { Informer, objectKey } from './informer.ts';
import { mapService, type KubeSyncOptions } from './mapping.ts';
import { EventReporter } from './events.ts';
import { ChangeSignal } from '../../changes.ts';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface KubernetesSourceOptions extends KubeSyncOptions {
  kc: KubeConfig;
  log: Logger;
  /** post invalid-annotation Events on the Service (default true) */
  reportEvents?: boolean;
  onInformerRestart?: (informer: string, reason: string) => void;
  /** a name or meta key escaping changed (logged here at warn, once per Service until it changes) */
  onEscaped?: () => void;
}

export class KubernetesSource {
  readonly kind = 'kubernetes' as const;
  private readonly changed = new ChangeSignal();
  readonly services: Informer<V1Service>;
  readonly slices: Informer<V1EndpointSlice>;
  readonly nodes: Informer<V1Node>;
  private readonly o: KubernetesSourceOptions;
  private readonly events: EventReporter;
  /** Services whose escaped values were logged, with what was logged */
  private readonly reported = new Map<string, string>();

  constructor(o: KubernetesSourceOptions) {
    this.o = o;
    const core = o.kc.makeApiClient(CoreV1Api);
    const discovery = o.kc.makeApiClient(DiscoveryV1Api);
    const onChange = (): void => this.changed.poke();
    const common = { kc: o.kc, log: o.log, onChange, ...(o.onInformerRestart ? { onRestart: o.onInformerRestart } : {}) };
    this.services = new Informer<V1Service>({ ...common, name: 'services', watchPath: '/api/v1/services', list: (cont) => core.listServiceForAllNamespaces({ limit: 500, ...(cont ? { _continue: cont } : {}) }) });
    this.slices = new Informer<V1EndpointSlice>({ ...common, name: 'endpointslices', watchPath: '/apis/discovery.k8s.io/v1/endpointslices', list: (cont) => discovery.listEndpointSliceForAllNamespaces({ limit: 500, ...(cont ? { _continue: cont } : {}) }) });
    this.nodes = new Informer<V1Node>({ ...common, name: 'nodes', watchPath: '/api/v1/nodes', list: (cont) => core.listNode({ limit: 500, ...(cont ? { _continue: cont } : {}) }) });
    this.events = new EventReporter({ core, log: o.log, component: `gantry-registrator/${o.cluster}`, enabled: o.reportEvents ?? true });
  }

  /** true once every informer has applied its first full list */
  get synced(): boolean {
    return this.services.synced && this.slices.synced && this.nodes.synced;
  }

  /** Starts the informers; resolves when all three have listed once. */
  async start(signal: AbortSignal): Promise<void> {
    for (const inf of [this.services, this.slices, this.nodes]) {
      void inf.run(signal);
    }
    await Promise.race([
      Promise.all([this.services.whenSynced(), this.slices.whenSynced(), this.nodes.whenSynced()]),
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted before the first list')), { once: true })),
    ]);
  }

  /** The desired instances now. Throws while not every informer has listed. */
  async snapshot(): Promise<ServiceInstance[]> {
    if (!this.synced) throw new Error('kubernetes: informers have not listed yet');
    const byService = new Map<string, V1EndpointSlice[]>();
    for (const slice of this.slices.store.values()) {
      const svc = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (!svc) continue;
      const key = `${slice.metadata?.namespace ?? ''}/${svc}`;
      const list = byService.get(key);
      if (list) list.push(slice); else byService.set(key, [slice]);
    }
    const nodes = new Map<string, V1Node>();
    for (const n of this.nodes.store.values()) if (n.metadata?.name) nodes.set(n.metadata.name, n);
    const out: ServiceInstance[] = [];
    for (const svc of this.services.store.values()) {
      const key = objectKey(svc);
      const r = mapService(svc, byService.get(key) ?? [], nodes, this.o);
      if (r.kind === 'instances') {
        out.push(...r.instances);
        this.events.clear(svc);
        this.reportEscaped(key, r.escaped);
      } else if (r.kind === 'error' && this.events.isNew(svc, r.error.message)) {
        this.o.log.warn({ service: key, annotation: r.error.annotation, reason: r.error.reason }, 'invalid annotation: Service skipped');
        this.events.report(svc, r.error.message).catch((err: unknown) => this.o.log.warn({ service: key, err: errorMessage(err) }, 'could not post Kubernetes Event'));
      }
    }
    return out;
  }

  private reportEscaped(service: string, escaped: ReadonlyArray<{ annotation: string; original: string; result: string }>): void {
    const logged = JSON.stringify(escaped);
    if (escaped.length && this.reported.get(service) !== logged) {
      for (const e of escaped) {
        this.o.log.warn({ service: escapeLogField(service), annotation: escapeLogField(e.annotation), original: escapeLogField(e.original), result: e.result }, 'Service annotation changed to fit Consul');
        this.o.onEscaped?.();
      }
    }
    if (escaped.length) this.reported.set(service, logged); else this.reported.delete(service);
  }

  /** Yields each time something changed (coalesced), until aborted. */
  async *changes(signal: AbortSignal): AsyncIterable<void> {
    yield* this.changed.stream(signal);
  }

}
