// Dubbo's registry URLs as ZooKeeper holds them: a provider is the child node
// `<root>/<interface>/providers/<URL-encoded URL>`, the URL being
// `protocol://host:port/path?k=v&k=v` and the encoding Java's URLEncoder
// (space as '+', every byte but [A-Za-z0-9.*_-] as %XX). Pure: parse and format
// are the same module, so what the sink writes is what the source reads.
import { isIPv4, isIPv6 } from 'node:net';
import { describe, GantryError } from '@gantry/core';

export interface DubboUrl {
  /** dubbo, tri, rest, hessian, http, ... (also consumer, route, override, empty for the other categories) */
  protocol: string;
  /** an IPv4/IPv6 address (no brackets) or a host name */
  host: string;
  port: number;
  /** the path without its leading '/': usually the interface, may carry a context path (rest) */
  path: string;
  /** the query parameters in the order they came */
  params: ReadonlyMap<string, string>;
}

export type Parsed = { ok: true; url: DubboUrl } | { ok: false; reason: string };

/** A node name longer than this is refused before decoding (ZooKeeper's own limit is 1 MB of request). */
export const MAX_NODE_NAME = 16 * 1024;

const PROTOCOL = /^[A-Za-z][A-Za-z0-9+.-]{0,31}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Java's URLDecoder: '+' is a space, %XX are UTF-8 bytes; a bad escape is an error naming where. */
export function decodeNodeName(name: string): { ok: true; value: string } | { ok: false; reason: string } {
  if (name.length > MAX_NODE_NAME) return { ok: false, reason: `node name of ${name.length} characters is longer than ${MAX_NODE_NAME}` };
  const bad = /%(?![0-9A-Fa-f]{2})/.exec(name);
  if (bad) return { ok: false, reason: `bad percent-encoding at character ${bad.index} (${describe(name.slice(bad.index, bad.index + 3))})` };
  try {
    return { ok: true, value: decodeURIComponent(name.replace(/\+/g, ' ')) };
  } catch {
    return { ok: false, reason: 'percent-encoding is not valid UTF-8' };
  }
}

/** Java's URLEncoder (UTF-8): what Dubbo's URL.encode writes as the node name. */
export function encodeNodeName(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2e || b === 0x2d || b === 0x2a || b === 0x5f) out += String.fromCharCode(b);
    else if (b === 0x20) out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Why `host` (no brackets) is not an IPv4/IPv6 address or a host name, or undefined when it is one. */
export function hostProblem(host: string): string | undefined {
  if (isIPv4(host) || isIPv6(host)) return undefined;
  if (!HOST_NAME.test(host) || /^[0-9.]+$/.test(host)) return `${describe(host)} is not an IP address or host name`;
  return undefined;
}

function parseHostPort(authority: string): { host: string; port: number } | string {
  let host: string;
  let portText: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return `IPv6 address without ']' in ${describe(authority)}`;
    host = authority.slice(1, end);
    if (!isIPv6(host)) return `${describe(host)} is not an IPv6 address`;
    if (authority[end + 1] !== ':') return `no port after ${describe(authority.slice(0, end + 1))}`;
    portText = authority.slice(end + 2);
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon < 0) return `no port in ${describe(authority)}`;
    host = authority.slice(0, colon);
    portText = authority.slice(colon + 1);
    if (host.includes(':')) return `IPv6 address ${describe(host)} must be in brackets`;
    const bad = hostProblem(host);
    if (bad) return bad;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return `port ${describe(portText)} is not a number`;
  const port = Number(portText);
  if (port < 1 || port > 65535) return `port ${port} is out of range 1-65535`;
  return { host, port };
}

/** Parses a decoded Dubbo URL. User info (user:password@) is accepted and dropped: it is never kept or logged. */
export function parseDubboUrl(text: string): Parsed {
  const m = /^([^:/?#]*):\/\/([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/s.exec(text);
  if (!m) return { ok: false, reason: 'not a protocol://host:port/path URL' };
  const protocol = m[1]!;
  if (!PROTOCOL.test(protocol)) return { ok: false, reason: `protocol ${describe(protocol)} is not valid` };
  const authority = m[2]!.slice(m[2]!.lastIndexOf('@') + 1);
  const hp = parseHostPort(authority);
  if (typeof hp === 'string') return { ok: false, reason: hp };
  const path = m[3] ?? '';
  if (CONTROL.test(path)) return { ok: false, reason: `path ${describe(path)} contains a control character` };
  const params = new Map<string, string>();
  for (const pair of (m[4] ?? '').split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? pair : pair.slice(eq + 1); // Dubbo: a bare key stands for key=key
    if (key === '') continue;
    params.set(key, value);
  }
  return { ok: true, url: { protocol, host: hp.host, port: hp.port, path, params } };
}

/** Decodes a ZooKeeper node name and parses the URL in it. */
export function parseProviderNode(name: string): Parsed {
  const d = decodeNodeName(name);
  if (!d.ok) return d;
  return parseDubboUrl(d.value);
}

/** The URL as Dubbo's URL.toFullString writes it: parameters sorted by key. */
export function formatDubboUrl(u: DubboUrl): string {
  if (!PROTOCOL.test(u.protocol)) throw new GantryError('E_DUBBO_URL', `protocol ${describe(u.protocol)} is not valid`);
  if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw new GantryError('E_DUBBO_URL', `port ${u.port} is out of range 1-65535`);
  const host = isIPv6(u.host) ? `[${u.host}]` : u.host;
  const hp = parseHostPort(`${host}:${u.port}`);
  if (typeof hp === 'string') throw new GantryError('E_DUBBO_URL', hp);
  for (const [k, v] of u.params) {
    if (/[&=?#]/.test(k) || k === '' || /[&]/.test(v)) throw new GantryError('E_DUBBO_URL', `parameter ${describe(k)}=${describe(v)} would not survive a round trip`);
  }
  const query = [...u.params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
  return `${u.protocol}://${host}:${u.port}/${u.path}${query ? `?${query}` : ''}`;
}

/** The node name a provider with this URL gets. */
export const formatProviderNode = (u: DubboUrl): string => encodeNodeName(formatDubboUrl(u));

/** The interface a URL serves: its `interface` parameter, else its path's last segment. */
export function interfaceOf(u: DubboUrl): string {
  return u.params.get('interface') ?? u.path.slice(u.path.lastIndexOf('/') + 1);
}
