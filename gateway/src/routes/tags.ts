// What one instance's tags say about where it is routed: fabio's `urlprefix-`
// syntax (so fabio users switch without retagging), `gantry.host=` /
// `gantry.path=` tags (the templater's), and `<service>.<domain>` for every
// service. Tags are untrusted: a bad one is reported (naming the tag) and skipped.
import { describe, escapeDnsLabel } from '@gantry/core';

export type Proto = 'http' | 'https';

export interface RouteSpec {
  /** lower-case host name, '' for any host */
  host: string;
  /** path prefix, always starting with '/' */
  path: string;
  /** host + path: the route's key (a host never holds '/') */
  key: string;
  /** prefix removed from the path before forwarding */
  strip: string | undefined;
  proto: Proto;
  /** fabio weight: this service's share (0..1) of the route's traffic */
  weight: number | undefined;
  tlsSkipVerify: boolean;
}

export interface TagOptions {
  domain: string;
  /** fabio's tag prefix (default urlprefix-) */
  prefix: string;
  hostTag: string;
  pathTag: string;
}

export interface TagResult {
  specs: RouteSpec[];
  /** one line per refused tag: which tag and why */
  errors: string[];
}

const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const HOST_RE = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
// RFC 3986 path characters, no query or fragment
const PATH_RE = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]{0,1023}$/;

/** A host name as routes hold it: lower case, no port, no trailing dot; undefined when not a DNS name. */
export function normalizeHost(raw: string): string | undefined {
  let h = raw.toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  return HOST_RE.test(h) ? h : undefined;
}

export function validPath(p: string): boolean {
  return PATH_RE.test(p);
}

const SPACE_RE = /\s/;
const NO_OPTIONS: readonly string[] = Object.freeze([]);

function parseUrlprefix(body: string, tag: string): RouteSpec | string {
  // most tags are one word (urlprefix-/path): no split
  const words = SPACE_RE.test(body) ? body.trim().split(/\s+/) : [body];
  const target = words[0] ?? '';
  const slash = target.indexOf('/');
  const rawHost = slash === -1 ? target : target.slice(0, slash);
  const path = slash === -1 ? '/' : target.slice(slash);
  if (rawHost.startsWith(':')) return `tag ${describe(tag)}: TCP routes (urlprefix-:port) are not served by the HTTP gateway`;
  let host = '';
  if (rawHost !== '') {
    const h = normalizeHost(rawHost);
    if (!h) return `tag ${describe(tag)}: host ${describe(rawHost)} is not a DNS name`;
    host = h;
  }
  if (!validPath(path)) return `tag ${describe(tag)}: path ${describe(path)} is not a URL path`;
  const spec: RouteSpec = { host, path, key: host + path, strip: undefined, proto: 'http', weight: undefined, tlsSkipVerify: false };
  for (const opt of words.length > 1 ? words.slice(1) : NO_OPTIONS) {
    const eq = opt.indexOf('=');
    const k = eq === -1 ? opt : opt.slice(0, eq);
    const v = eq === -1 ? '' : opt.slice(eq + 1);
    switch (k) {
      case 'strip':
        if (!validPath(v)) return `tag ${describe(tag)}: strip=${describe(v)} is not a URL path`;
        spec.strip = v;
        break;
      case 'proto':
        if (v !== 'http' && v !== 'https') return `tag ${describe(tag)}: proto=${describe(v)} is not served (http or https)`;
        spec.proto = v;
        break;
      case 'weight': {
        const w = Number(v);
        if (!/^\d*\.?\d+$/.test(v) || !(w >= 0 && w <= 1)) return `tag ${describe(tag)}: weight=${describe(v)} is not a number from 0 to 1`;
        spec.weight = w;
        break;
      }
      case 'tlsskipverify':
        spec.tlsSkipVerify = v === 'true';
        break;
      case 'host':
        // fabio: the Host header sent upstream; ours is always the client's
        break;
      default:
        return `tag ${describe(tag)}: option ${describe(k)} is not supported`;
    }
  }
  return spec;
}

/**
 * Route specs of one instance. `<service>.<domain>` (when the name makes a DNS
 * label) always; then each urlprefix-, host and path tag.
 */
export function routeSpecs(service: string, tags: readonly string[], meta: Readonly<Record<string, string>>, o: TagOptions): TagResult {
  const d = derivedOf(o);
  const specs: RouteSpec[] = [];
  let errors = NO_ERRORS;
  const err = (e: string): void => { if (errors === NO_ERRORS) errors = []; errors.push(e); };
  // most names already are DNS labels (LABEL_RE): no need for the escaper's normalisation
  const label = LABEL_RE.test(service) ? undefined : escapeDnsLabel(service);
  if (!label || (label.ok && !label.changed)) {
    const host = service + d.dotDomain;
    specs.push({ host, path: '/', key: `${host}/`, strip: undefined, proto: 'http', weight: undefined, tlsSkipVerify: false });
  } else err(`service ${describe(service)} is not a DNS label: no ${o.domain} name (routes from its tags still apply)`);
  const { hostEq, pathEq } = d;
  const hostMeta = meta[d.hostMetaKey];
  let hosts = hostMeta ? [hostMeta] : undefined;
  for (const tag of tags) {
    if (tag.startsWith(o.prefix)) {
      const r = parseUrlprefix(tag.slice(o.prefix.length), tag);
      if (typeof r === 'string') err(r);
      else specs.push(r);
    } else if (tag.startsWith(hostEq)) {
      (hosts ??= []).push(tag.slice(hostEq.length));
    } else if (tag.startsWith(pathEq)) {
      const p = tag.slice(pathEq.length);
      if (!validPath(p)) err(`tag ${describe(tag)}: ${describe(p)} is not a URL path`);
      else specs.push({ host: o.domain, path: p, key: o.domain + p, strip: undefined, proto: 'http', weight: undefined, tlsSkipVerify: false });
    }
  }
  for (const raw of hosts ?? []) {
    const h = normalizeHost(raw);
    if (!h) err(`${o.hostTag} ${describe(raw)} of ${describe(service)} is not a DNS name`);
    else specs.push({ host: h, path: '/', key: `${h}/`, strip: undefined, proto: 'http', weight: undefined, tlsSkipVerify: false });
  }
  const one = specs.length > 1 ? unique(specs, label === undefined || (label.ok && !label.changed), err) : specs;
  return { specs: one, errors };
}

/**
 * One spec per route key. A tag naming the service's own `<service>.<domain>/` route replaces the
 * implied one (`urlprefix-orders.example/ proto=https`: every request over TLS, none in plain
 * HTTP beside it); of two tags naming the same route, the first applies and a differing second
 * is reported. Without this an instance would sit twice in the route, once per spec.
 */
function unique(specs: RouteSpec[], implied: boolean, err: (e: string) => void): RouteSpec[] {
  // a handful of specs a service: a scan costs less than a map, and most have no duplicate (no copy)
  let out: RouteSpec[] | undefined;
  for (let i = 1; i < specs.length; i++) {
    const s = specs[i]!;
    let j = -1;
    const n = out ? out.length : i;
    for (let k = 0; k < n; k++) if ((out ?? specs)[k]!.key === s.key) { j = k; break; }
    if (j === -1) { out?.push(s); continue; }
    out ??= specs.slice(0, i);
    const had = out[j]!;
    if (implied && had === specs[0]) { out[j] = s; continue; }
    if (had.proto !== s.proto || had.strip !== s.strip || had.weight !== s.weight || had.tlsSkipVerify !== s.tlsSkipVerify) {
      err(`route ${describe(s.key)} is given twice with different options; the first applies`);
    }
  }
  return out ?? specs;
}

/** options-derived strings, computed once per options object */
interface Derived { dotDomain: string; hostEq: string; pathEq: string; hostMetaKey: string }
const derived = new WeakMap<TagOptions, Derived>();
function derivedOf(o: TagOptions): Derived {
  let d = derived.get(o);
  if (!d) derived.set(o, d = { dotDomain: `.${o.domain}`, hostEq: `${o.hostTag}=`, pathEq: `${o.pathTag}=`, hostMetaKey: o.hostTag.replace(/\./g, '-') });
  return d;
}

/** shared by every result without errors (read only) */
const NO_ERRORS = Object.freeze([]) as unknown as string[];
