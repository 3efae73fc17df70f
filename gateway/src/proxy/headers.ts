// Header rewriting on the data path: hop-by-hop headers (RFC 9110 §7.6.1, and
// whatever the Connection header names) never cross the gateway; the request
// gains X-Forwarded-For/-Proto/-Host, Forwarded and X-Request-Id.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { isDroppedRequestHeader, type RequestHead } from './fast/head.ts';

export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authenticate', 'proxy-authorization', 'http2-settings',
]);

/** the header names the Connection header lists (lower case), or undefined */
function connectionListed(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
  const text = Array.isArray(connection) ? connection.join(',') : connection;
  const out = new Set<string>();
  for (const t of text.split(',')) {
    const n = t.trim().toLowerCase();
    if (n && n !== 'close' && n !== 'keep-alive') out.add(n);
  }
  return out.size ? out : undefined;
}

export interface ClientInfo {
  /** the client's address (the socket peer) */
  ip: string;
  proto: 'http' | 'https';
  /** the Host header as received */
  host: string;
  requestId: string;
}

/** `for=` of a Forwarded element: IPv6 quoted and bracketed (RFC 7239 §6) */
function forwardedFor(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/**
 * Headers sent upstream: the client's minus hop-by-hop ones and Expect (our own
 * server answered 100-continue already), plus the forwarding
 * headers. `upgrade` keeps Connection/Upgrade (WebSocket and other upgrades).
 */
export function upstreamRequestHeaders(h: IncomingHttpHeaders, c: ClientInfo, upgrade = false): OutgoingHttpHeaders {
  const listed = connectionListed(h.connection);
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    if (HOP_BY_HOP.has(k) || listed?.has(k) || k === 'expect') continue;
    out[k] = h[k];
  }
  const xff = h['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${c.ip}` : c.ip;
  out['x-forwarded-proto'] = c.proto;
  out['x-forwarded-host'] = c.host;
  const fwd = `for=${forwardedFor(c.ip)};host="${c.host}";proto=${c.proto}`;
  const prior = h.forwarded;
  out.forwarded = prior ? `${prior}, ${fwd}` : fwd;
  out['x-request-id'] = c.requestId;
  if (upgrade) {
    out.connection = 'Upgrade';
    out.upgrade = h.upgrade;
  }
  return out;
}

/** Response headers sent to the client: the upstream's minus hop-by-hop ones. */
export function clientResponseHeaders(h: IncomingHttpHeaders, requestId: string): OutgoingHttpHeaders {
  const listed = connectionListed(h.connection);
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    if (HOP_BY_HOP.has(k) || listed?.has(k)) continue;
    out[k] = h[k];
  }
  out['x-request-id'] = requestId;
  return out;
}

/** set by the gateway itself on the fast path (the client's values are appended to or replaced) */
const FAST_REPLACED: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id']);

/**
 * The fast path's upstream request head, as text: the same rules as
 * upstreamRequestHeaders (hop-by-hop and Connection-listed headers out,
 * forwarding headers in), header names kept in the client's case.
 */
export function fastUpstreamHead(h: RequestHead, path: string, c: ClientInfo): string {
  let out = `${h.method} ${path} HTTP/1.1\r\n`;
  const listed = h.connectionListed;
  for (const x of h.headers) {
    const k = x.key;
    if (isDroppedRequestHeader(k) || FAST_REPLACED.has(k) || (listed.length && listed.includes(k))) continue;
    out += `${x.name}: ${x.value}\r\n`;
  }
  const xff = h.byKey['x-forwarded-for'];
  const prior = h.byKey.forwarded;
  const fwd = `for=${forwardedFor(c.ip)};host="${c.host}";proto=${c.proto}`;
  return `${out}x-forwarded-for: ${xff ? `${xff}, ${c.ip}` : c.ip}\r\nx-forwarded-proto: ${c.proto}\r\nx-forwarded-host: ${c.host}\r\nforwarded: ${prior ? `${prior}, ${fwd}` : fwd}\r\nx-request-id: ${c.requestId}\r\n\r\n`;
}
