// Reports a problem with a Service as a Kubernetes Event on it, so that
// `kubectl describe service` shows it. One Event per distinct message.
import type { CoreV1Api, V1Service } from '@kubernetes/client-node';
import type { Logger } from '@gantry/core';

export class EventReporter {
  private readonly reported = new Map<string, string>();
  private readonly o: { core: CoreV1Api; log: Logger; component: string; enabled: boolean };
  constructor(o: { core: CoreV1Api; log: Logger; component: string; enabled: boolean }) {
    this.o = o;
  }

  /** true when this problem was not reported for this Service yet */
  isNew(svc: V1Service, message: string): boolean {
    return this.reported.get(`${svc.metadata?.namespace ?? 'default'}/${svc.metadata?.name ?? ''}`) !== message;
  }

  async report(svc: V1Service, message: string): Promise<void> {
    const ns = svc.metadata?.namespace ?? 'default';
    const name = svc.metadata?.name ?? '';
    const key = `${ns}/${name}`;
    if (this.reported.get(key) === message) return;
    this.reported.set(key, message);
    if (!this.o.enabled) return;
    const now = new Date();
    await this.o.core.createNamespacedEvent({
      namespace: ns,
      body: {
        metadata: { generateName: `${name}.gantry-`, namespace: ns },
        involvedObject: { kind: 'Service', apiVersion: 'v1', namespace: ns, name, uid: svc.metadata?.uid ?? '', resourceVersion: svc.metadata?.resourceVersion ?? '' },
        reason: 'InvalidAnnotation',
        message,
        type: 'Warning',
        source: { component: this.o.component },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }

  /** the Service is fine again: a later problem is reported anew */
  clear(svc: V1Service): void {
    this.reported.delete(`${svc.metadata?.namespace ?? 'default'}/${svc.metadata?.name ?? ''}`);
  }
}
