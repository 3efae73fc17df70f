// Consul → ZooKeeper, the Consul side: which instances become Dubbo provider
// nodes. A service is exported when it carries the tag `dubbo.interface=<type>`
// (several allowed; settable through SERVICE_TAGS labels and Kubernetes tag
// annotations) or the Meta `dubbo-interface`; only instances whose checks all
// pass; never an instance the ZooKeeper import wrote (the other half of the loop
// guard). Two blocking queries (services, health) say "look again".
import {
  asInstanceId, asServiceName, escapeConsulId, errorMessage, runBlockingQuery, META,
  type ConsulClient, type Logger, type OwnerId, type ServiceInstance,
} from '@gantry/core';
import type { Source } from '../../reconciler.ts';
import { ChangeSignal } from '../../changes.ts';

export interface ExportSourceOptions {
  consul: ConsulClient;
  owner: OwnerId;
  log: Logger;
  /** an instance that cannot be exported (bad interface name, ...) */
  onProblem?: (service: string, reason: string) => void;
}

interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null };
  Checks: Array<{ Status: string }>;
}

/** the Dubbo fields an exported instance carries in its Meta (the ZooKeeper sink reads them) */
export const EXPORT_FIELDS = ['interface', 'version', 'group', 'protocol', 'application', 'methods'] as const;
const JAVA_TYPE = /^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$/;
const PARAM_VALUE = /^[A-Za-z0-9_.,:*$-]{1,256}$/;

function dubboFields(s: HealthEntry['Service']): { interfaces: string[]; fields: Record<string, string> } {
  const fields: Record<string, string> = {};
  const interfaces: string[] = [];
  for (const tag of s.Tags ?? []) {
    const m = /^dubbo\.([a-z]+)=(.*)$/.exec(tag);
    if (!m) continue;
    if (m[1] === 'interface') interfaces.push(m[2]!);
    else fields[m[1]!] = m[2]!;
  }
  for (const f of EXPORT_FIELDS) {
    const v = s.Meta?.[`dubbo-${f}`];
    if (v === undefined) continue;
    if (f === 'interface') interfaces.push(...v.split(',').map((x) => x.trim()).filter(Boolean));
    else fields[f] ??= v;
  }
  return { interfaces: [...new Set(interfaces)], fields };
}

export class ConsulExportSource implements Source {
  readonly kind = 'zookeeper' as const;
  private readonly o: ExportSourceOptions;
  private readonly signal = new ChangeSignal();
  private readonly reported = new Set<string>();
  constructor(o: ExportSourceOptions) {
    this.o = o;
  }

  changes(signal: AbortSignal): AsyncIterable<void> {
    void this.watch('/v1/catalog/services', signal);
    void this.watch('/v1/health/state/any', signal);
    return this.signal.stream(signal);
  }

  private async watch(path: string, signal: AbortSignal): Promise<void> {
    let first = true;
    await runBlockingQuery<unknown>({
      consul: this.o.consul, path, endpoint: path, waitMs: 30_000, minSpacingMs: 0, backoff: { baseMs: 250, maxMs: 5000 }, signal,
      onChange: () => { if (!first) this.signal.poke(); first = false; },
      onError: (err) => { this.o.log.warn({ path, err: errorMessage(err) }, 'zookeeper export: Consul watch failed; retrying'); this.signal.poke(); },
    });
  }

  async snapshot(): Promise<ServiceInstance[]> {
    const c = this.o.consul;
    const [all, withMeta] = await Promise.all([
      c.request<Record<string, string[]> | null>('GET', '/v1/catalog/services'),
      // not the import's own records (they carry dubbo-interface too): a health read each, for nothing
      c.request<Record<string, string[]> | null>('GET', '/v1/catalog/services', { query: { filter: `"dubbo-interface" in ServiceMeta and ServiceMeta["${META.source}"] != "zookeeper"` } }),
    ]);
    const names = new Set(Object.keys(withMeta.body ?? {}));
    for (const [name, tags] of Object.entries(all.body ?? {})) if (tags.some((t) => t.startsWith('dubbo.interface='))) names.add(name);
    const out: ServiceInstance[] = [];
    await Promise.all([...names].map(async (name) => {
      const res = await c.request<HealthEntry[] | null>('GET', `/v1/health/service/${encodeURIComponent(name)}`, { query: { passing: true } });
      for (const e of res.body ?? []) out.push(...this.toExports(e));
    }));
    return out;
  }

  private problem(service: string, reason: string): void {
    const key = `${service}\n${reason}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.o.log.warn({ service, problem: reason }, 'zookeeper export: instance not exported');
    this.o.onProblem?.(service, reason);
  }

  private toExports(e: HealthEntry): ServiceInstance[] {
    const s = e.Service;
    if (s.Meta?.[META.source] === 'zookeeper') return []; // came from ZooKeeper: never back
    if (e.Checks.some((c) => c.Status !== 'passing')) return [];
    const { interfaces, fields } = dubboFields(s);
    for (const [k, v] of Object.entries(fields)) {
      if (!PARAM_VALUE.test(v)) { this.problem(s.Service, `dubbo.${k} ${JSON.stringify(v.slice(0, 64))} is not a valid Dubbo parameter value`); return []; }
    }
    const out: ServiceInstance[] = [];
    for (const iface of interfaces) {
      if (!JAVA_TYPE.test(iface) || iface.length > 255) { this.problem(s.Service, `dubbo.interface ${JSON.stringify(iface.slice(0, 64))} is not a Java type name`); continue; }
      const id = escapeConsulId(`${e.Node.Node}/${s.ID}/${iface}`);
      if (!id.ok) { this.problem(s.Service, id.reason); continue; }
      const meta: Record<string, string> = { [META.owner]: this.o.owner, [META.source]: 'zookeeper', [META.origin]: `consul:${e.Node.Node}/${s.ID}`, 'dubbo-interface': iface };
      for (const [k, v] of Object.entries(fields)) meta[`dubbo-${k}`] = v;
      meta['dubbo-application'] ??= s.Service;
      out.push({
        id: asInstanceId(id.value), name: asServiceName(s.Service), address: s.Address || e.Node.Address, port: s.Port,
        tags: [], meta, checks: [], origin: { source: 'zookeeper', ref: '', name: s.ID },
      });
    }
    return out;
  }
}
