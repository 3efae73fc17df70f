// The helpers a template may call. The escaping ones are core's escape module
// (the only place Gantry escapes), turned into helpers: their output is marked
// safe, so it is written as it is. Everything else a template prints goes through
// the default escape (engine.ts), which refuses anything that could break a line
// or a word of haproxy.cfg or a hosts file.
import { isIP } from 'node:net';
import Handlebars from 'handlebars';
import {
  GantryError, describe,
  escapeHAProxyIdentifier, escapeHAProxyValue, escapeHAProxyLogFormat, escapeDnsLabel, escapeDnsName, escapeLogField,
  type Escaped,
} from '@gantry/core';

type HelperOptions = Handlebars.HelperOptions;
type Helper = (...args: unknown[]) => unknown;

/** the characters the default escape refuses: whitespace, comment, quotes, escapes, variables, sample expressions */
const UNSAFE = /[\s#\\"'`$%{}\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export class RenderError extends GantryError {
  constructor(message: string) { super('E_RENDER', message); }
}

/** What `{{value}}` does: helper output (SafeString) as is; plain words as is; anything else is an error. */
export function defaultEscape(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Handlebars.SafeString) return value.toHTML();
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  if (typeof value === 'boolean') return String(value);
  if (typeof value !== 'string') {
    throw new RenderError(`cannot print ${Array.isArray(value) ? 'a list' : `a ${typeof value}`} directly; use #each or a field of it`);
  }
  if (UNSAFE.test(value)) {
    throw new RenderError(`value ${describe(value)} cannot be written as it is (whitespace, #, quotes, $, %, braces or control characters); pass it through a helper: haproxyValue, haproxyLogFormat, haproxyId, dnsName, dnsLabel`);
  }
  return value;
}

function unwrap(what: string, r: Escaped, input: unknown): Handlebars.SafeString {
  if (!r.ok) throw new RenderError(`${what} of ${describe(String(input))}: ${r.reason}`);
  return new Handlebars.SafeString(r.value);
}

function str(v: unknown): string {
  if (v instanceof Handlebars.SafeString) return v.toHTML();
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '';
}
const isOptions = (v: unknown): v is HelperOptions => typeof v === 'object' && v !== null && 'hash' in v && 'data' in v;
/** the arguments before Handlebars' trailing options object */
const argsOf = (args: unknown[]): unknown[] => (args.length && isOptions(args[args.length - 1]) ? args.slice(0, -1) : args);

function listOf(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (v === null || v === undefined) return [];
  throw new RenderError(`expected a list, got ${typeof v}`);
}

/** a field of an item, by a dotted path ("meta.version"); own properties only */
function field(item: unknown, path: string): unknown {
  let cur: unknown = item;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function tagsOf(item: unknown): string[] {
  if (Array.isArray(item)) return item.map(String);
  const t = field(item, 'tags');
  return Array.isArray(t) ? t.map(String) : [];
}

function compare(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = str(a);
  const y = str(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** values after "<prefix>=" in a tag list: tagValues tags "gantry.host" */
export function tagValuesOf(tags: readonly string[], prefix: string): string[] {
  const p = `${prefix}=`;
  return tags.filter((t) => t.startsWith(p)).map((t) => t.slice(p.length));
}

export function createHelpers(kv: () => ReadonlyMap<string, string>): Record<string, Helper> {
  const helpers: Record<string, Helper> = {
    // escaping: core/escape.ts
    haproxyId: (...a) => { const [v, prefix] = argsOf(a); const input = `${prefix === undefined ? '' : str(prefix)}${str(v)}`; return unwrap('haproxyId', escapeHAProxyIdentifier(input), input); },
    // an argument to match or pass (ACL pattern, map key, path): never holds a '%'
    haproxyValue: (...a) => { const [v] = argsOf(a); return unwrap('haproxyValue', escapeHAProxyValue(str(v)), v); },
    // a literal text inside a log-format argument (set-header value, lf-string, log-format): '%' doubled
    haproxyLogFormat: (...a) => { const [v] = argsOf(a); return unwrap('haproxyLogFormat', escapeHAProxyLogFormat(str(v)), v); },
    dnsLabel: (...a) => { const [v] = argsOf(a); return unwrap('dnsLabel', escapeDnsLabel(str(v)), v); },
    dnsName: (...a) => { const [v] = argsOf(a); return unwrap('dnsName', escapeDnsName(str(v)), v); },
    hostPort: (...a) => {
      const [addr, port] = argsOf(a);
      const host = str(addr);
      const p = Number(port);
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RenderError(`hostPort: ${describe(str(port))} is not a port`);
      if (isIP(host) === 6) return new Handlebars.SafeString(`[${host}]:${p}`);
      if (isIP(host) === 4) return new Handlebars.SafeString(`${host}:${p}`);
      const name = escapeDnsName(host);
      if (!name.ok || name.changed) throw new RenderError(`hostPort: ${describe(host)} is neither an IP nor a host name`);
      return new Handlebars.SafeString(`${name.value}:${p}`);
    },
    logField: (...a) => { const [v, max] = argsOf(a); return new Handlebars.SafeString(escapeLogField(str(v), typeof max === 'number' ? max : 256).replace(/[\s#"'$%\\{}]/g, '_')); },

    // lists
    byTag: (...a) => { const [list, tag] = argsOf(a); return listOf(list).filter((i) => tagsOf(i).includes(str(tag))); },
    byTagPrefix: (...a) => { const [list, p] = argsOf(a); return listOf(list).filter((i) => tagsOf(i).some((t) => t.startsWith(str(p)))); },
    byMeta: (...a) => {
      const [list, key, value] = argsOf(a);
      return listOf(list).filter((i) => {
        const m = field(i, 'meta');
        if (m === null || typeof m !== 'object' || !Object.prototype.hasOwnProperty.call(m, str(key))) return false;
        return value === undefined || (m as Record<string, unknown>)[str(key)] === str(value);
      });
    },
    byStatus: (...a) => { const [list, ...statuses] = argsOf(a); const want = statuses.map(str); return listOf(list).filter((i) => want.includes(str(field(i, 'status')))); },
    where: (...a) => { const [list, path, value] = argsOf(a); return listOf(list).filter((i) => compare(field(i, str(path)), value) === 0); },
    sortBy: (...a) => {
      const [list, path, dir] = argsOf(a);
      const sign = str(dir) === 'desc' ? -1 : 1;
      return [...listOf(list)].sort((x, y) => sign * compare(field(x, str(path)), field(y, str(path))));
    },
    groupBy: (...a) => {
      const [list, path] = argsOf(a);
      const groups = new Map<string, unknown[]>();
      for (const i of listOf(list)) {
        const k = str(field(i, str(path)));
        const g = groups.get(k);
        if (g) g.push(i); else groups.set(k, [i]);
      }
      return [...groups.keys()].sort().map((key) => ({ key, items: groups.get(key)! }));
    },
    first: (...a) => listOf(argsOf(a)[0])[0],
    last: (...a) => { const l = listOf(argsOf(a)[0]); return l[l.length - 1]; },
    len: (...a) => { const [v] = argsOf(a); return Array.isArray(v) ? v.length : typeof v === 'string' ? v.length : v && typeof v === 'object' ? Object.keys(v).length : 0; },
    join: (...a) => { const [list, sep] = argsOf(a); return listOf(list).map(str).join(sep === undefined ? ',' : str(sep)); },

    // tags and meta
    hasTag: (...a) => { const [tags, tag] = argsOf(a); return tagsOf(tags).includes(str(tag)); },
    tagValue: (...a) => { const [tags, prefix, def] = argsOf(a); return tagValuesOf(tagsOf(tags), str(prefix))[0] ?? (def === undefined ? '' : def); },
    tagValues: (...a) => { const [tags, prefix] = argsOf(a); return tagValuesOf(tagsOf(tags), str(prefix)); },
    metaValue: (...a) => {
      const [item, key, def] = argsOf(a);
      const m = field(item, 'meta') ?? item;
      const v = m && typeof m === 'object' && Object.prototype.hasOwnProperty.call(m, str(key)) ? (m as Record<string, unknown>)[str(key)] : undefined;
      return v ?? (def === undefined ? '' : def);
    },
    kvValue: (...a) => { const [key, def] = argsOf(a); return kv().get(str(key)) ?? (def === undefined ? '' : def); },
    kvKeys: (...a) => { const [prefix] = argsOf(a); const p = prefix === undefined ? '' : str(prefix); return [...kv().keys()].filter((k) => k.startsWith(p)).sort(); },

    // logic and numbers
    eq: (...a) => { const [x, y] = argsOf(a); return compare(x, y) === 0 && (x === undefined) === (y === undefined); },
    ne: (...a) => { const [x, y] = argsOf(a); return compare(x, y) !== 0; },
    lt: (...a) => { const [x, y] = argsOf(a); return compare(x, y) < 0; },
    gt: (...a) => { const [x, y] = argsOf(a); return compare(x, y) > 0; },
    and: (...a) => argsOf(a).every(Boolean),
    or: (...a) => argsOf(a).some(Boolean),
    not: (...a) => !argsOf(a)[0],
    default: (...a) => { const [v, d] = argsOf(a); return v === undefined || v === null || v === '' ? d : v; },
    add: (...a) => argsOf(a).reduce<number>((s, v) => s + Number(v), 0),
  };
  return helpers;
}
