// Route policy from Consul KV, read on every KV change (no restart):
//   <prefix>/policy/<service>  JSON (below): split, match, subsets, mirror, rate limit, retries
//   <prefix>/active/<service>  one word: the name of the subset receiving all traffic (blue/green)
// A bad value is reported naming its key and what is wrong; the service then
// keeps no policy (plain round robin over its healthy instances), and every
// other service keeps its own.
import { describe } from '@gantry/core';

/** instances whose tags hold `k=v` or whose Meta has k: v, for every pair */
export type Subset = Readonly<Record<string, string>>;

export interface SplitRule { subset: Subset; weight: number }
export interface MatchRule { header: string | undefined; cookie: string | undefined; value: string; subset: Subset }
export interface MirrorRule { service: string; percent: number }
export type RateKey = { kind: 'ip' } | { kind: 'route' } | { kind: 'header'; name: string };
export interface RateLimitRule { limit: number; windowMs: number; key: RateKey }

export interface ServicePolicy {
  split: SplitRule[];
  match: MatchRule[];
  subsets: ReadonlyMap<string, Subset>;
  /** the subset name receiving all traffic (blue/green), from active/<service> or "active" */
  active: string | undefined;
  mirror: MirrorRule | undefined;
  rateLimit: RateLimitRule | undefined;
}

export interface PolicySet {
  byService: ReadonlyMap<string, ServicePolicy>;
  /** one line per refused key */
  errors: string[];
}

const emptyPolicy = (): ServicePolicy => ({ split: [], match: [], subsets: new Map(), active: undefined, mirror: undefined, rateLimit: undefined });

class Bad extends Error {}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function subsetOf(v: unknown, what: string): Subset {
  const o = obj(v, what);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(o)) {
    if (typeof val !== 'string') throw new Bad(`${what}.${k} must be a string`);
    out[k] = val;
  }
  if (!Object.keys(out).length) throw new Bad(`${what} is empty`);
  return out;
}

function windowMs(v: unknown, what: string): number {
  if (typeof v === 'number' && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v);
    if (m) return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'];
  }
  throw new Bad(`${what} must be a duration such as 1s or 1m`);
}

function rateKey(v: unknown, what: string): RateKey {
  if (v === undefined || v === 'ip') return { kind: 'ip' };
  if (v === 'route') return { kind: 'route' };
  if (typeof v === 'string' && /^header:[A-Za-z0-9-]{1,64}$/.test(v)) return { kind: 'header', name: v.slice(7).toLowerCase() };
  throw new Bad(`${what} must be "ip", "route" or "header:<name>"`);
}

/** One policy/<service> value. Throws Bad with what is wrong. */
export function parseServicePolicy(text: string): ServicePolicy {
  let json: unknown;
  try { json = JSON.parse(text); } catch (err) { throw new Bad(`not JSON (${(err as Error).message})`); }
  const o = obj(json, 'the value');
  const p = emptyPolicy();
  const known = new Set(['split', 'match', 'subsets', 'active', 'mirror', 'rateLimit']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new Bad(`unknown field ${describe(k)} (known: ${[...known].join(', ')})`);
  const subsets = new Map<string, Subset>();
  if (o.subsets !== undefined) for (const [name, s] of Object.entries(obj(o.subsets, 'subsets'))) subsets.set(name, subsetOf(s, `subsets.${name}`));
  p.subsets = subsets;
  const resolveSubset = (v: unknown, what: string): Subset => {
    if (typeof v === 'string') {
      const s = subsets.get(v);
      if (!s) throw new Bad(`${what}: no subset named ${describe(v)}`);
      return s;
    }
    return subsetOf(v, what);
  };
  if (o.split !== undefined) {
    if (!Array.isArray(o.split)) throw new Bad('split must be a list');
    let total = 0;
    o.split.forEach((r: unknown, i) => {
      const ro = obj(r, `split[${i}]`);
      const w = ro.weight;
      if (typeof w !== 'number' || !(w >= 0) || w > 100) throw new Bad(`split[${i}].weight must be a number from 0 to 100`);
      total += w;
      p.split.push({ subset: resolveSubset(ro.subset, `split[${i}].subset`), weight: w });
    });
    if (p.split.length && total <= 0) throw new Bad('split weights add up to 0');
  }
  if (o.match !== undefined) {
    if (!Array.isArray(o.match)) throw new Bad('match must be a list');
    o.match.forEach((r: unknown, i) => {
      const ro = obj(r, `match[${i}]`);
      const header = typeof ro.header === 'string' ? ro.header.toLowerCase() : undefined;
      const cookie = typeof ro.cookie === 'string' ? ro.cookie : undefined;
      if ((header === undefined) === (cookie === undefined)) throw new Bad(`match[${i}] needs exactly one of header or cookie`);
      if (typeof ro.value !== 'string') throw new Bad(`match[${i}].value must be a string`);
      p.match.push({ header, cookie, value: ro.value, subset: resolveSubset(ro.subset, `match[${i}].subset`) });
    });
  }
  if (o.active !== undefined) {
    if (typeof o.active !== 'string' || !subsets.has(o.active)) throw new Bad(`active must name one of the subsets (${[...subsets.keys()].join(', ') || 'none declared'})`);
    p.active = o.active;
  }
  if (o.mirror !== undefined) {
    const m = obj(o.mirror, 'mirror');
    if (typeof m.service !== 'string' || !m.service) throw new Bad('mirror.service must name a service');
    const pct = m.percent ?? 100;
    if (typeof pct !== 'number' || !(pct >= 0 && pct <= 100)) throw new Bad('mirror.percent must be a number from 0 to 100');
    p.mirror = { service: m.service, percent: pct };
  }
  if (o.rateLimit !== undefined) {
    const r = obj(o.rateLimit, 'rateLimit');
    if (typeof r.limit !== 'number' || !Number.isInteger(r.limit) || r.limit < 1) throw new Bad('rateLimit.limit must be a whole number of at least 1');
    p.rateLimit = { limit: r.limit, windowMs: windowMs(r.window ?? '1s', 'rateLimit.window'), key: rateKey(r.key, 'rateLimit.key') };
  }
  return p;
}

/** a KV key of the gateway's policy: `policy/<service>` or `active/<service>` */
export const POLICY_KEY = /^(policy|active)\/(.+)$/;

/** The raw KV values of one service: its policy JSON and its active subset (either may be absent). */
export interface ServiceEntry { policy: string | undefined; active: string | undefined }

/** the KV values under the gateway's prefix, by service */
export function entriesByService(kv: ReadonlyMap<string, string>): Map<string, ServiceEntry> {
  const out = new Map<string, ServiceEntry>();
  for (const [key, value] of kv) {
    const m = POLICY_KEY.exec(key);
    if (!m) continue;
    const service = m[2]!;
    let e = out.get(service);
    if (!e) { e = { policy: undefined, active: undefined }; out.set(service, e); }
    if (m[1] === 'active') e.active = value.trim();
    else e.policy = value;
  }
  return out;
}

/** One service's policy from its KV values; a bad value is one error line naming its key (the service then has no policy, or ignores the switch). */
export function parseServiceEntry(service: string, e: ServiceEntry): { policy: ServicePolicy | undefined; errors: string[] } {
  const errors: string[] = [];
  let policy: ServicePolicy | undefined;
  if (e.policy !== undefined) {
    try {
      policy = parseServicePolicy(e.policy);
    } catch (err) {
      if (!(err instanceof Bad)) throw err;
      errors.push(`KV ${describe(`policy/${service}`)}: ${err.message}; service ${describe(service)} runs without a policy`);
    }
  }
  if (e.active !== undefined) {
    const name = e.active;
    if (!policy) errors.push(`KV ${describe(`active/${service}`)}: no valid policy/${service} declares subsets; ignored`);
    else if (!policy.subsets.has(name)) errors.push(`KV ${describe(`active/${service}`)}: ${describe(name)} is not a subset of ${describe(service)} (${[...policy.subsets.keys()].join(', ')}); ignored`);
    else policy.active = name;
  }
  return { policy, errors };
}

/** Every policy under the gateway's KV prefix (keys relative to it). */
export function parsePolicies(kv: ReadonlyMap<string, string>): PolicySet {
  const byService = new Map<string, ServicePolicy>();
  const errors: string[] = [];
  for (const [service, e] of entriesByService(kv)) {
    const r = parseServiceEntry(service, e);
    if (r.policy) byService.set(service, r.policy);
    errors.push(...r.errors);
  }
  return { byService, errors };
}

/** does an instance (tags, meta) belong to the subset */
export function inSubset(s: Subset, tags: readonly string[], meta: Readonly<Record<string, string>>): boolean {
  for (const k in s) {
    const v = s[k]!;
    if (meta[k] === v) continue;
    if (tags.includes(`${k}=${v}`)) continue;
    return false;
  }
  return true;
}
