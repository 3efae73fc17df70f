// A Dubbo provider URL → the Consul instance it stands for. Pure, so every rule
// is a table test. Everything taken from the URL goes through core's escaping
// and checks; a URL that cannot make a valid record is an error naming the field.
import {
  escapeConsulId, escapeDnsLabel, checkConsulMetaValue, checkConsulTag, asInstanceId, asServiceName, describe,
  META, type ServiceInstance, type OwnerId,
} from '@gantry/core';
import { interfaceOf, type DubboUrl } from './dubbo-url.ts';

/** The URL parameter that marks a node Gantry wrote (the loop guard); its value is the writer's owner. */
export const ORIGIN_PARAM = 'gantry.owner';

/** How a provider's Consul service name is made: from its interface, its application, or a template of {param} fields. */
export type NameRule = 'interface' | 'application' | { template: string };

export function parseNameRule(text: string): NameRule {
  if (text === 'interface' || text === 'application') return text;
  return { template: text };
}

export interface ProviderContext {
  owner: OwnerId;
  /** the providers list the node is in (the origin is <path>#<host>:<port>) */
  path: string;
  nameRule: NameRule;
}

export type ProviderResult =
  | { kind: 'instance'; instance: ServiceInstance }
  | { kind: 'skip'; reason: string }
  | { kind: 'error'; reason: string };

const NOT_PROVIDERS = new Set(['consumer', 'route', 'routes', 'override', 'empty', 'configurators', 'routers']);

function field(u: DubboUrl, name: string, iface: string): string {
  if (name === 'interface') return iface;
  if (name === 'protocol') return u.protocol;
  if (name === 'host') return u.host;
  if (name === 'port') return String(u.port);
  return u.params.get(name) ?? '';
}

function serviceName(u: DubboUrl, iface: string, rule: NameRule): { ok: true; value: string } | { ok: false; reason: string } {
  let raw: string;
  if (rule === 'interface') raw = iface;
  else if (rule === 'application') {
    raw = u.params.get('application') ?? '';
    if (raw === '') return { ok: false, reason: 'no application parameter to name the service by' };
  } else raw = rule.template.replace(/\{([A-Za-z0-9_.-]+)\}/g, (_, k: string) => field(u, k, iface));
  const r = escapeDnsLabel(raw);
  return r.ok ? { ok: true, value: r.value } : { ok: false, reason: `service name: ${r.reason}` };
}

/** Dubbo's methods list may be long; Consul's meta values stop at 512 characters. */
function methodsMeta(methods: string): string {
  if (methods.length <= 512) return methods;
  const cut = methods.slice(0, 508);
  return `${cut.slice(0, Math.max(0, cut.lastIndexOf(',')))},...`;
}

export function providerToInstance(u: DubboUrl, c: ProviderContext): ProviderResult {
  if (NOT_PROVIDERS.has(u.protocol)) return { kind: 'skip', reason: `a ${u.protocol}:// URL is not a provider` };
  const category = u.params.get('category') ?? 'providers';
  if (category !== 'providers') return { kind: 'skip', reason: `category ${describe(category)} is not providers` };
  if (u.params.has(ORIGIN_PARAM)) return { kind: 'skip', reason: 'written by Gantry (loop guard)' };
  if (u.params.get('enabled') === 'false' || u.params.get('disabled') === 'true') return { kind: 'skip', reason: 'disabled provider (Dubbo consumers do not call it either)' };
  const iface = interfaceOf(u);
  if (iface === '' || !/^[A-Za-z0-9_$.-]{1,255}$/.test(iface)) return { kind: 'error', reason: `interface ${describe(iface)} is not a Java type name` };
  const name = serviceName(u, iface, c.nameRule);
  if (!name.ok) return { kind: 'error', reason: name.reason };
  const group = u.params.get('group') ?? '';
  const version = u.params.get('version') ?? '';
  const id = escapeConsulId(`dubbo:${name.value}:${u.protocol}:${u.host}:${u.port}:${iface}:${group}:${version}`);
  if (!id.ok) return { kind: 'error', reason: `instance id: ${id.reason}` };
  const origin = `${c.path.length <= 400 ? c.path : `${c.path.slice(0, 400)}...`}#${u.host}:${u.port}`;
  const meta: Record<string, string> = {
    [META.owner]: c.owner,
    [META.source]: 'zookeeper',
    [META.origin]: origin,
    'dubbo-interface': iface,
    'dubbo-protocol': u.protocol,
  };
  const optional: Array<[string, string | undefined]> = [
    ['dubbo-version', version || undefined], ['dubbo-group', group || undefined],
    ['dubbo-application', u.params.get('application')], ['dubbo-release', u.params.get('release') ?? u.params.get('dubbo')],
    ['dubbo-methods', u.params.get('methods')], ['dubbo-revision', u.params.get('revision')], ['dubbo-side', u.params.get('side')],
  ];
  for (const [k, v] of optional) {
    if (v === undefined || v === '') continue;
    const checked = checkConsulMetaValue(k === 'dubbo-methods' ? methodsMeta(v) : v);
    if (!checked.ok) return { kind: 'error', reason: `${k.slice(6)}: ${checked.reason}` };
    meta[k] = checked.value;
  }
  const tags = ['dubbo', `dubbo-${u.protocol}`];
  if (version) tags.push(`version=${version}`);
  if (group) tags.push(`group=${group}`);
  for (const t of tags) {
    const r = checkConsulTag(t);
    if (!r.ok) return { kind: 'error', reason: r.reason };
  }
  let weights: ServiceInstance['weights'];
  const w = u.params.get('weight');
  if (w !== undefined) {
    if (!/^[0-9]{1,9}$/.test(w)) return { kind: 'error', reason: `weight ${describe(w)} is not a whole number` };
    weights = { passing: Math.min(65535, Math.max(1, Number(w))), warning: 1 };
  }
  return {
    kind: 'instance',
    instance: {
      id: asInstanceId(id.value), name: asServiceName(name.value), address: u.host, port: u.port, tags, meta, checks: [],
      origin: { source: 'zookeeper', ref: origin, name: iface },
      ...(weights ? { weights } : {}),
    },
  };
}
