// Dubbo 3's application-level layout (also Spring Cloud Zookeeper's, and any
// Curator ServiceDiscovery): one node per instance, `<root>/<app>/<id>`, whose
// data is Curator's ServiceInstance JSON:
//   {"name":"orders","id":"10.0.0.7:20880","address":"10.0.0.7","port":20880,"sslPort":null,
//    "payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"…","name":"orders",
//               "metadata":{"dubbo.metadata.revision":"…","dubbo.endpoints":"[…]"}},
//    "registrationTimeUTC":1600000000000,"serviceType":"DYNAMIC","uriSpec":null}
// (Spring Cloud: payload @class org.springframework.cloud.zookeeper.discovery.ZookeeperInstance,
// metadata with instance_status). Pure: node data in, a Consul instance (or why not) out.
// Everything from the JSON goes through core's escaping and checks; a metadata
// entry Consul cannot hold is dropped and named, the instance kept.
import {
  escapeConsulId, escapeDnsLabel, escapeConsulMetaKey, checkConsulMetaValue, asInstanceId, asServiceName, describe,
  META, type ServiceInstance, type OwnerId,
} from '@gantry/core';
import { hostProblem } from './dubbo-url.ts';

export interface AppInstanceContext {
  owner: OwnerId;
  /** `<root>/<app>` */
  appPath: string;
  /** the app's node name (the service name comes from it) */
  app: string;
  /** the instance's node name (Curator's instance id) */
  node: string;
}

export type AppInstanceResult =
  | { kind: 'instance'; instance: ServiceInstance; dropped: string[] }
  | { kind: 'skip'; reason: string }
  | { kind: 'error'; reason: string };

/** Consul allows 64 Meta pairs; Gantry's own (owner, source, origin, spec, zk-format, zk-app) come first. */
const MAX_USER_META = 64 - 6;

export type AppFormat = 'dubbo3' | 'spring-cloud' | 'curator';

function formatOf(payload: Record<string, unknown> | undefined): AppFormat {
  const cls = typeof payload?.['@class'] === 'string' ? payload['@class'] : '';
  if (cls.startsWith('org.apache.dubbo.')) return 'dubbo3';
  if (cls.startsWith('org.springframework.cloud.')) return 'spring-cloud';
  return 'curator';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function appInstanceToInstance(data: Buffer | undefined, c: AppInstanceContext): AppInstanceResult {
  if (!data || data.length === 0) return { kind: 'error', reason: 'no data (a Curator ServiceInstance JSON is expected)' };
  let doc: unknown;
  try {
    doc = JSON.parse(data.toString('utf8'));
  } catch (err) {
    return { kind: 'error', reason: `data is not JSON (${describe((err as Error).message)})` };
  }
  if (!isObject(doc)) return { kind: 'error', reason: 'data is not a JSON object' };
  if (doc.enabled === false) return { kind: 'skip', reason: 'instance disabled (enabled: false)' };
  const address = doc.address;
  if (typeof address !== 'string' || address === '') return { kind: 'error', reason: 'address is missing or not a string' };
  const badHost = hostProblem(address);
  if (badHost) return { kind: 'error', reason: `address: ${badHost}` };
  const rawPort = doc.port ?? doc.sslPort;
  if (typeof rawPort !== 'number' || !Number.isInteger(rawPort) || rawPort < 1 || rawPort > 65535) {
    return { kind: 'error', reason: `port ${describe(JSON.stringify(rawPort ?? null))} is not a number in 1-65535` };
  }
  if (doc.payload !== undefined && doc.payload !== null && !isObject(doc.payload)) return { kind: 'error', reason: 'payload is not a JSON object' };
  const payload = isObject(doc.payload) ? doc.payload : undefined;
  const metadata = payload?.metadata ?? {};
  if (!isObject(metadata)) return { kind: 'error', reason: 'payload.metadata is not a JSON object' };
  const status = metadata.instance_status;
  if (typeof status === 'string' && status !== 'UP' && status !== '') return { kind: 'skip', reason: `instance_status ${describe(status)} (not UP)` };

  const name = escapeDnsLabel(c.app);
  if (!name.ok) return { kind: 'error', reason: `service name: ${name.reason}` };
  const id = escapeConsulId(`zk-app:${name.value}:${c.node}`);
  if (!id.ok) return { kind: 'error', reason: `instance id: ${id.reason}` };
  const format = formatOf(payload);
  const origin = `${c.appPath}/${c.node}`;
  const appMeta = checkConsulMetaValue(c.app);
  const meta: Record<string, string> = {
    [META.owner]: c.owner,
    [META.source]: 'zookeeper',
    [META.origin]: origin.length <= 512 ? origin : `${origin.slice(0, 509)}...`,
    'zk-format': format,
    ...(appMeta.ok ? { 'zk-app': c.app } : {}),
  };
  const dropped: string[] = [];
  const entries = Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let kept = 0;
  for (const [k, v] of entries) {
    const key = escapeConsulMetaKey(k);
    if (!key.ok) { dropped.push(`metadata ${describe(k)}: ${key.reason}`); continue; }
    if (key.value.startsWith('gantry-') || key.value === 'zk-format' || key.value === 'zk-app') { dropped.push(`metadata ${describe(k)}: ${key.value} is Gantry's own meta key`); continue; }
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') { dropped.push(`metadata ${describe(k)}: not a string`); continue; }
    const value = checkConsulMetaValue(String(v));
    if (!value.ok) { dropped.push(`metadata ${describe(k)}: ${value.reason}`); continue; }
    if (key.value in meta) { dropped.push(`metadata ${describe(k)}: escapes to ${key.value}, as another key does`); continue; }
    if (kept >= MAX_USER_META) { dropped.push(`metadata ${describe(k)}: more than ${MAX_USER_META} entries`); continue; }
    meta[key.value] = value.value;
    kept++;
  }
  const tags = format === 'dubbo3' ? ['dubbo', 'dubbo3'] : [format];
  return {
    kind: 'instance',
    dropped,
    instance: {
      id: asInstanceId(id.value), name: asServiceName(name.value), address, port: rawPort, tags, meta, checks: [],
      origin: { source: 'zookeeper', ref: meta[META.origin]!, name: c.app },
    },
  };
}
