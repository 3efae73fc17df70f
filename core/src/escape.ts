// The one place where untrusted strings (container labels, Kubernetes annotations,
// ZooKeeper URLs, KV values, names written straight into Consul) are validated and
// escaped for the place they are going. Nothing reaches a config file, a DNS name,
// a Consul ID or a log line without passing through here.
import { createHash } from 'node:crypto';
import { GantryError } from './errors.ts';

export type Escaped = { ok: true; value: string; changed: boolean } | { ok: false; reason: string };

const MAX_INPUT = 64 * 1024;

function shortHash(input: string): string {
  return createHash('sha256').update(input).digest('hex').slice(0, 8);
}

function tooLong(input: string): Escaped | undefined {
  return input.length > MAX_INPUT ? { ok: false, reason: `longer than ${MAX_INPUT} characters (${input.length})` } : undefined;
}

/** Cuts to max characters, keeping the name unique with a hash of the whole input. */
function fit(value: string, max: number, input: string, sep: string): string {
  if (value.length <= max) return value;
  const h = shortHash(input);
  return value.slice(0, max - h.length - sep.length).replace(/[-_.]+$/, '') + sep + h;
}

/**
 * One DNS label (RFC 1123): a-z, 0-9 and '-', 1 to 63 characters, no '-' at
 * either end. Upper case folds to lower case; any other run of characters
 * becomes one '-'. An input with nothing usable is rejected.
 * Fits: one label of a DNS name (hosts file, Consul DNS), a Kubernetes-style
 * name part. Also safe bare in HAProxy and in a log line. Not for a whole name
 * with dots (escapeDnsName).
 */
export function escapeDnsLabel(input: string): Escaped {
  const long = tooLong(input);
  if (long) return long;
  const folded = input.normalize('NFKD').toLowerCase();
  let value = folded.replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  if (value === '') return { ok: false, reason: `${describe(input)} has no letter or digit to make a DNS label of` };
  value = fit(value, 63, input, '-');
  return { ok: true, value, changed: value !== input };
}

/**
 * A DNS name of several labels (each escaped as above), at most 253 characters.
 * Fits: a hosts-file or dnsmasq entry, a Host to match (bare in an HAProxy ACL
 * or map key). Not for a single label (escapeDnsLabel).
 */
export function escapeDnsName(input: string): Escaped {
  const labels = input.split('.');
  const out: string[] = [];
  for (const label of labels) {
    const r = escapeDnsLabel(label);
    if (!r.ok) return { ok: false, reason: `label ${describe(label)} of ${describe(input)}: ${r.reason}` };
    out.push(r.value);
  }
  const value = out.join('.');
  if (value.length > 253) return { ok: false, reason: `DNS name of ${value.length} characters is longer than 253` };
  return { ok: true, value, changed: value !== input };
}

/**
 * A Consul service name that also works in Consul DNS (<name>.service.consul):
 * letters, digits and '-'; '_' and '.' and other runs become '-'. Case is kept
 * (Consul's DNS is case-insensitive). At most 63 characters.
 * Fits: the Service name of a Consul registration. Not for IDs (escapeConsulId).
 */
export function escapeConsulServiceName(input: string): Escaped {
  const long = tooLong(input);
  if (long) return long;
  let value = input.normalize('NFKD').replace(/[^A-Za-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  if (value === '') return { ok: false, reason: `${describe(input)} has no letter or digit to make a service name of` };
  value = fit(value, 63, input, '-');
  return { ok: true, value, changed: value !== input };
}

/**
 * A Consul service or check ID: letters, digits and `_ . : -` (registrator's
 * `host:container:port` form survives); anything else becomes '_'. At most 128
 * characters; a changed or cut ID gets a hash of the input so two inputs never
 * share one ID.
 * Fits: Consul service and check IDs, session and lock names. Not for DNS.
 */
export function escapeConsulId(input: string): Escaped {
  const long = tooLong(input);
  if (long) return long;
  if (!/[A-Za-z0-9]/.test(input)) return { ok: false, reason: `${describe(input)} has no letter or digit to make an ID of` };
  let value = input.replace(/[^A-Za-z0-9_.:-]/g, '_');
  if (value !== input) value = `${value.slice(0, 110)}_${shortHash(input)}`;
  value = fit(value, 128, input, '_');
  return { ok: true, value, changed: value !== input };
}

/** A Consul Meta key: letters, digits, '_' and '-', at most 128 characters. Fits: Meta keys only. */
export function escapeConsulMetaKey(input: string): Escaped {
  const long = tooLong(input);
  if (long) return long;
  let value = input.replace(/[^A-Za-z0-9_-]+/g, '_');
  if (value.replace(/[_-]/g, '') === '') return { ok: false, reason: `${describe(input)} has no letter or digit to make a meta key of` };
  if (value.startsWith('consul-')) return { ok: false, reason: `meta key ${describe(input)} uses the reserved prefix "consul-"` };
  value = fit(value, 128, input, '_');
  return { ok: true, value, changed: value !== input };
}

/**
 * A Consul Meta value: at most 512 characters, no control characters.
 * Fits: storing in Consul only; a value read back is untrusted again and goes
 * through the escaper of wherever it is written next.
 */
export function checkConsulMetaValue(input: string): Escaped {
  if (input.length > 512) return { ok: false, reason: `meta value of ${input.length} characters is longer than 512` };
  if (CONTROL.test(input)) return { ok: false, reason: `meta value ${describe(input)} contains a control character` };
  return { ok: true, value: input, changed: false };
}

/**
 * A Consul tag: at most 255 characters, no control characters.
 * Fits: storing in Consul only (like meta values, untrusted when read back).
 */
export function checkConsulTag(input: string): Escaped {
  if (input === '') return { ok: false, reason: 'empty tag' };
  if (input.length > 255) return { ok: false, reason: `tag of ${input.length} characters is longer than 255` };
  if (CONTROL.test(input)) return { ok: false, reason: `tag ${describe(input)} contains a control character` };
  return { ok: true, value: input, changed: false };
}

/**
 * An HAProxy identifier (backend, server, frontend, ACL name): letters, digits
 * and `_ . : -`. Anything else becomes '_' and a hash of the input is added so
 * that two different inputs never collide. At most 100 characters.
 * Fits: HAProxy names (backend, server, ACL, map value naming a backend); safe
 * bare anywhere in haproxy.cfg, log-format arguments included (no '%').
 * Not for values to match (escapeHAProxyValue).
 */
export function escapeHAProxyIdentifier(input: string): Escaped {
  const long = tooLong(input);
  if (long) return long;
  if (input === '') return { ok: false, reason: 'empty identifier' };
  let value = input.replace(/[^A-Za-z0-9_.:-]/g, '_');
  if (value !== input) value = `${value.slice(0, 90)}_${shortHash(input)}`;
  value = fit(value, 100, input, '_');
  return { ok: true, value, changed: value !== input };
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** characters that are one word as they are in any HAProxy argument (no '%': see below) */
const HAPROXY_BARE = /^[A-Za-z0-9._~:/?&=@+,;!*()[\]-]+$/;

function haproxyCommon(input: string): Escaped | undefined {
  if (input === '') return { ok: false, reason: 'empty value' };
  if (input.length > 1024) return { ok: false, reason: `value of ${input.length} characters is longer than 1024` };
  if (CONTROL.test(input)) return { ok: false, reason: `value ${describe(input)} contains a control character` };
  return undefined;
}

const quoteHAProxy = (input: string): string => `"${input.replace(/[\\"'$#]/g, (c) => `\\${c}`)}"`;

/**
 * A value for an HAProxy config argument: an ACL pattern (`acl x var(h) -m str
 * <value>`, `path_beg <value>`), a map key, a bind or server address, and also a
 * log-format argument (`http-request set-header X <value>`, `lf-string`,
 * `log-format`, `use_backend %[...]`), because it never holds a '%'.
 * Returned bare when it is made of safe characters, otherwise in double quotes
 * with `\ " ' $ #` escaped, so it is always exactly one word on one line, and
 * neither `${ENV}` nor a `\x..` escape is expanded by HAProxy's parser.
 * Refused: '%' (HAProxy evaluates `%[...]`, `%ci` ... in log-format arguments;
 * a literal percent there needs escapeHAProxyLogFormat), control characters
 * (newline, NUL, ...) and values over 1024 characters (a config line is 2048
 * bytes at most). Not for identifiers (escapeHAProxyIdentifier) nor for log lines.
 */
export function escapeHAProxyValue(input: string): Escaped {
  const bad = haproxyCommon(input);
  if (bad) return bad;
  if (input.includes('%')) return { ok: false, reason: `value ${describe(input)} contains '%', which HAProxy evaluates in log-format arguments (%[...]); use escapeHAProxyLogFormat (template helper haproxyLogFormat) to write it literally there` };
  if (HAPROXY_BARE.test(input)) return { ok: true, value: input, changed: false };
  return { ok: true, value: quoteHAProxy(input), changed: true };
}

/**
 * A literal text inside an HAProxy log-format argument only (`log-format`,
 * `http-request set-header X <value>`, `http-request return ... lf-string`,
 * `unique-id-format`): every '%' is doubled (`%%` is HAProxy's literal percent),
 * so no `%[...]` sample fetch or `%ci` variable in the input is ever evaluated,
 * then written as escapeHAProxyValue writes a value (bare or quoted, one word,
 * one line). Not for ACL patterns, map keys or plain arguments, where `%%`
 * would stay two characters: use escapeHAProxyValue there.
 */
export function escapeHAProxyLogFormat(input: string): Escaped {
  const bad = haproxyCommon(input);
  if (bad) return bad;
  const doubled = input.replaceAll('%', '%%');
  if (HAPROXY_BARE.test(doubled.replaceAll('%', ''))) return { ok: true, value: doubled, changed: doubled !== input };
  return { ok: true, value: quoteHAProxy(doubled), changed: true };
}

/**
 * A string for a log line or an error message: control characters escaped as
 * \n, \u0000 ..., cut to max characters with a count of what was left out.
 * Fits: a field of a JSON log line or an error message. Not for any config
 * file: it keeps spaces, quotes and '%'.
 */
export function escapeLogField(input: string, max = 256): string {
  let s = input.length > max ? `${input.slice(0, max)}…(+${input.length - max} chars)` : input;
  s = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
  return s;
}

/** How an untrusted input is quoted in a reason: JSON-quoted, escaped, and short. */
export function describe(input: string): string {
  return JSON.stringify(escapeLogField(input, 64));
}

/** Unwraps an Escaped value or throws E_INVALID with what and why. */
export function mustEscape(what: string, r: Escaped): string {
  if (!r.ok) throw new GantryError('E_INVALID', `${what}: ${r.reason}`);
  return r.value;
}
