// Consul's own service-definition files (JSON or YAML: `service: {...}` or
// `services: [...]`) → instances for machines that run no agent. Pure: text in,
// instances and problems out. Every problem names the file and the line:column
// of the entry (or field) at fault; a bad entry is skipped, the others kept. A
// file that does not parse, is empty, or has neither key is `unreadable`: the
// caller keeps what the file said before (a half-written file never empties it).
import { isIP } from 'node:net';
import { parseDocument, LineCounter, isMap, isSeq, type Node as YamlNode } from 'yaml';
import {
  escapeConsulServiceName, escapeConsulId, escapeConsulMetaKey, checkConsulMetaValue, checkConsulTag, parseDuration, describe,
  asInstanceId, asServiceName, META, type ServiceInstance, type OwnerId, type CheckSpec,
} from '@gantry/core';

export interface Problem { file: string; line: number; col: number; reason: string }
export type Definitions = { ok: true; instances: ServiceInstance[]; problems: Problem[] } | { ok: false; problem: Problem };

const HOST = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

class EntryError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(reason);
    this.field = field;
  }
}

/** a field by Consul's config-file name (snake_case) or its API name (CamelCase) */
function get(obj: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) if (obj[n] !== undefined) return obj[n];
  return undefined;
}

function str(obj: Record<string, unknown>, field: string, ...names: string[]): string | undefined {
  const v = get(obj, field, ...names);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new EntryError(field, `${field} must be a string`);
  return v;
}

function duration(obj: Record<string, unknown>, field: string, ...names: string[]): string | undefined {
  const v = str(obj, field, ...names);
  if (v === undefined) return undefined;
  try { parseDuration(v); } catch { throw new EntryError(field, `${field} ${describe(v)} is not a duration (use e.g. 10s)`); }
  return v;
}

function checkOf(c: unknown, i: number): CheckSpec {
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new EntryError(`checks[${i}]`, 'a check must be an object');
  const o = c as Record<string, unknown>;
  const interval = duration(o, 'interval', 'Interval') ?? '10s';
  const timeout = duration(o, 'timeout', 'Timeout');
  const dereg = duration(o, 'deregister_critical_service_after', 'DeregisterCriticalServiceAfter');
  const common = { interval, ...(timeout ? { timeout } : {}), ...(dereg ? { deregisterAfter: dereg } : {}) };
  const http = str(o, 'http', 'HTTP');
  const tcp = str(o, 'tcp', 'TCP');
  if (http !== undefined) {
    let u: URL;
    try { u = new URL(http); } catch { throw new EntryError(`checks[${i}].http`, `${describe(http)} is not a URL`); }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new EntryError(`checks[${i}].http`, 'only http and https URLs');
    const method = str(o, 'method', 'Method');
    if (method !== undefined && !/^[A-Z]{1,16}$/.test(method)) throw new EntryError(`checks[${i}].method`, `${describe(method)} is not an HTTP method`);
    return { kind: u.protocol === 'https:' ? 'https' : 'http', url: http, ...(method ? { method } : {}), ...(get(o, 'tls_skip_verify', 'TLSSkipVerify') === true ? { tlsSkipVerify: true } : {}), ...common };
  }
  if (tcp !== undefined) {
    if (!/^[A-Za-z0-9.:[\]-]+:[0-9]{1,5}$/.test(tcp)) throw new EntryError(`checks[${i}].tcp`, `${describe(tcp)} is not host:port`);
    return { kind: 'tcp', address: tcp, ...common };
  }
  throw new EntryError(`checks[${i}]`, 'only http and tcp checks can run for a machine without an agent');
}

function entryOf(raw: unknown, owner: OwnerId, origin: string): ServiceInstance {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new EntryError('service', 'a service must be an object');
  const o = raw as Record<string, unknown>;
  const rawName = str(o, 'name', 'Name');
  if (!rawName) throw new EntryError('name', 'name is required');
  const name = escapeConsulServiceName(rawName);
  if (!name.ok) throw new EntryError('name', name.reason);
  const address = str(o, 'address', 'Address');
  if (!address) throw new EntryError('address', 'address is required (the machine runs no agent)');
  if (!isIP(address) && !HOST.test(address)) throw new EntryError('address', `${describe(address)} is not an IP address or host name`);
  const port = get(o, 'port', 'Port');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new EntryError('port', `port ${describe(String(port))} is not a whole number 1-65535`);
  const id = escapeConsulId(str(o, 'id', 'ID') ?? `${name.value}-${address}-${port}`);
  if (!id.ok) throw new EntryError('id', id.reason);
  const tagsRaw = get(o, 'tags', 'Tags') ?? [];
  if (!Array.isArray(tagsRaw)) throw new EntryError('tags', 'tags must be a list');
  const tags: string[] = [];
  for (const t of tagsRaw) {
    const r = typeof t === 'string' ? checkConsulTag(t) : { ok: false as const, reason: 'a tag must be a string' };
    if (!r.ok) throw new EntryError('tags', r.reason);
    if (!tags.includes(t as string)) tags.push(t as string);
  }
  const metaRaw = get(o, 'meta', 'Meta') ?? {};
  if (typeof metaRaw !== 'object' || metaRaw === null || Array.isArray(metaRaw)) throw new EntryError('meta', 'meta must be a map');
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metaRaw as Record<string, unknown>)) {
    const kr = escapeConsulMetaKey(k);
    if (!kr.ok) throw new EntryError(`meta.${k}`, kr.reason);
    if (kr.value.startsWith('gantry-')) throw new EntryError(`meta.${k}`, 'gantry-* meta keys are Gantry\'s own');
    const vr = typeof v === 'string' ? checkConsulMetaValue(v) : { ok: false as const, reason: 'a meta value must be a string' };
    if (!vr.ok) throw new EntryError(`meta.${k}`, vr.reason);
    meta[kr.value] = v as string;
  }
  Object.assign(meta, { [META.owner]: owner, [META.source]: 'static', [META.origin]: origin.length <= 512 ? origin : `...${origin.slice(-500)}` });
  const checksRaw = [...[get(o, 'check', 'Check')].filter((c) => c !== undefined), ...((get(o, 'checks', 'Checks') as unknown[] | undefined) ?? [])];
  const checks = checksRaw.map((c, i) => checkOf(c, i));
  const w = get(o, 'weights', 'Weights') as Record<string, unknown> | undefined;
  let weights: ServiceInstance['weights'];
  if (w !== undefined) {
    const passing = get(w, 'passing', 'Passing') ?? 1;
    const warning = get(w, 'warning', 'Warning') ?? 1;
    if (typeof passing !== 'number' || typeof warning !== 'number' || passing < 1 || warning < 1 || passing > 65535 || warning > 65535) throw new EntryError('weights', 'weights must be whole numbers 1-65535');
    weights = { passing, warning };
  }
  return {
    id: asInstanceId(id.value), name: asServiceName(name.value), address, port, tags, meta, checks,
    origin: { source: 'static', ref: origin }, ...(weights ? { weights } : {}),
  };
}

export function parseDefinitions(text: string, file: string, owner: OwnerId): Definitions {
  const lc = new LineCounter();
  const at = (node: YamlNode | null | undefined, reason: string): Problem => {
    const pos = node?.range ? lc.linePos(node.range[0]) : { line: 1, col: 1 };
    return { file, line: pos.line, col: pos.col, reason };
  };
  if (text.trim() === '') return { ok: false, problem: { file, line: 1, col: 1, reason: 'empty file (kept what it said before; delete the file to remove its services)' } };
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
    return { ok: false, problem: { file, line: pos.line, col: pos.col, reason: `does not parse: ${e.code}` } };
  }
  const root = doc.contents;
  if (!isMap(root)) return { ok: false, problem: at(root, 'expected a map with "service" or "services"') };
  const one = root.get('service', true) as YamlNode | undefined;
  const many = root.get('services', true) as YamlNode | undefined;
  if (one === undefined && many === undefined) return { ok: false, problem: at(root, 'expected a map with "service" or "services"') };
  const entries: YamlNode[] = [];
  if (one !== undefined) entries.push(one);
  if (many !== undefined) {
    if (!isSeq(many)) return { ok: false, problem: at(many, '"services" must be a list') };
    for (const item of many.items) entries.push(item as YamlNode);
  }
  const instances: ServiceInstance[] = [];
  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const [i, node] of entries.entries()) {
    try {
      const inst = entryOf((node as { toJSON(): unknown }).toJSON(), owner, file);
      if (seen.has(inst.id)) throw new EntryError('id', `id ${describe(inst.id)} is used twice in this file`);
      seen.add(inst.id);
      instances.push(inst);
    } catch (err) {
      if (!(err instanceof EntryError)) throw err;
      let fieldNode: YamlNode | undefined;
      if (isMap(node)) fieldNode = node.get(err.field.split(/[.[]/)[0]!, true);
      const p = at(fieldNode ?? node, `entry ${i + 1}, ${err.field}: ${err.message}`);
      problems.push(p);
    }
  }
  return { ok: true, instances, problems };
}
