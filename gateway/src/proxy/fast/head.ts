// The fast path's HTTP/1.1 parsing, deliberately narrow: a request head is
// accepted only when it is plainly well-formed and needs nothing the fast path
// does not do (a body, an upgrade, Expect, a duplicate header...). Anything else
// is not judged here: the connection is handed to Node's HTTP server, whose
// strict parser and the hostile-request filter refuse or serve it as before.
// Response heads come from upstreams and are checked as strictly; a response the
// fast path cannot frame is an upstream failure (502), never forwarded as is.
import { HOST_HEADER, MAX_HOST } from '../hostile.ts';

/** a header as received: name in its original case, value trimmed */
export interface RawHeader {
  readonly name: string;
  /** lower case */
  readonly key: string;
  readonly value: string;
}

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly headers: readonly RawHeader[];
  /** lower-case name → value (names are unique in a fast-path request) */
  readonly byKey: Readonly<Record<string, string>>;
  readonly host: string;
  /** the client asked to close the connection after this answer */
  readonly close: boolean;
  /** lower-case names the Connection header lists (hop-by-hop for this request) */
  readonly connectionListed: readonly string[];
}

/** why a request head goes to Node's HTTP server instead (a metric label) */
export type HandOff = 'method' | 'version' | 'body' | 'upgrade' | 'expect' | 'syntax' | 'duplicate' | 'host' | 'too-large';

const FAST_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);
/** RFC 9110 token characters */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** field-value characters: visible ASCII, space, tab (obs-text goes to Node) */
const VALUE = /^[\t\x20-\x7e]*$/;
const TARGET = /^\/[\x21-\x7e]*$/;
const MAX_TARGET = 8192;

/** Hop-by-hop names (RFC 9110 §7.6.1) and Expect: never forwarded by the fast path. */
const REQUEST_DROPPED: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authenticate', 'proxy-authorization', 'http2-settings',
]);

export const isDroppedRequestHeader = (key: string): boolean => REQUEST_DROPPED.has(key);

/**
 * Parses the request head in `text` (latin1, without the final CRLF CRLF).
 * Returns the head, or why it is handed to Node's server.
 */
export function parseRequestHead(text: string): RequestHead | HandOff {
  const lines = text.split('\r\n');
  const first = lines[0]!;
  const sp1 = first.indexOf(' ');
  const sp2 = first.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || first.indexOf(' ', sp2 + 1) !== -1) return 'syntax';
  const method = first.slice(0, sp1);
  if (!FAST_METHODS.has(method)) return 'method';
  if (first.slice(sp2 + 1) !== 'HTTP/1.1') return 'version';
  const target = first.slice(sp1 + 1, sp2);
  if (target.length > MAX_TARGET || !TARGET.test(target)) return 'syntax';
  const headers: RawHeader[] = [];
  const byKey: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return 'syntax'; // also obs-fold (a line starting with space) and bare CR/LF pieces
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return 'syntax';
    const value = line.slice(colon + 1).trim();
    if (!VALUE.test(value)) return 'syntax';
    const key = name.toLowerCase();
    if (byKey[key] !== undefined) return 'duplicate';
    byKey[key] = value;
    headers.push({ name, key, value });
  }
  if (byKey['transfer-encoding'] !== undefined) return 'body';
  const cl = byKey['content-length'];
  if (cl !== undefined && cl !== '0') return 'body';
  if (byKey.upgrade !== undefined) return 'upgrade';
  if (byKey.expect !== undefined) return 'expect';
  const host = byKey.host;
  if (host === undefined || host.length > MAX_HOST || !HOST_HEADER.test(host)) return 'host';
  let close = false;
  const listed: string[] = [];
  const conn = byKey.connection;
  if (conn !== undefined) {
    for (const t of conn.split(',')) {
      const n = t.trim().toLowerCase();
      if (n === 'close') close = true;
      else if (n && n !== 'keep-alive') listed.push(n);
    }
  }
  return { method, target, headers, byKey, host, close, connectionListed: listed };
}

/** How the end of a response body is found. */
export type Framing =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** no length, not chunked: the body ends when the upstream closes (the client's connection closes too) */
  | { kind: 'close' };

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  /** the header lines forwarded to the client (hop-by-hop ones left out), each ending in CRLF */
  readonly forward: string;
  readonly framing: Framing;
  /** the upstream connection may carry another request after this answer */
  readonly reusable: boolean;
}

const RESPONSE_DROPPED: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'proxy-authenticate', 'http2-settings', 'x-request-id',
]);
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/** Parses an upstream's response head (latin1, without the final CRLF CRLF); a string is what was wrong. */
export function parseResponseHead(text: string, method: string): ResponseHead | string {
  const lines = text.split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (!m) return 'malformed status line';
  const http10 = m[1] === '0';
  const status = Number(m[2]);
  let forward = '';
  let length: string | undefined;
  let chunked = false;
  let te = false;
  let connection = '';
  const listed: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return 'malformed header line';
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return 'malformed header name';
    const value = line.slice(colon + 1).trim();
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return `control character in header ${name}`;
    const key = name.toLowerCase();
    if (key === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== value)) return 'invalid or conflicting Content-Length';
      if (length !== undefined) continue; // an identical repeat: forwarded once
      length = value;
    } else if (key === 'transfer-encoding') {
      if (te) return 'repeated Transfer-Encoding';
      te = true;
      const codings = value.toLowerCase().split(',').map((s) => s.trim());
      if (codings[codings.length - 1] !== 'chunked') return 'Transfer-Encoding not ending in chunked';
      chunked = true;
    } else if (key === 'connection') {
      connection += `${value.toLowerCase()},`;
      for (const t of value.split(',')) { const n = t.trim().toLowerCase(); if (n) listed.push(n); }
      continue;
    }
    if (RESPONSE_DROPPED.has(key)) continue;
    forward += `${name}: ${value}\r\n`;
  }
  if (chunked && length !== undefined) return 'both Content-Length and Transfer-Encoding';
  if (listed.length) {
    // names the Connection header lists are hop-by-hop too
    const keep = forward.split('\r\n').filter((l) => l && !listed.includes(l.slice(0, l.indexOf(':')).toLowerCase()));
    forward = keep.length ? `${keep.join('\r\n')}\r\n` : '';
  }
  let framing: Framing;
  if (method === 'HEAD' || status === 204 || status === 304 || status < 200) framing = { kind: 'none' };
  else if (chunked) framing = { kind: 'chunked' };
  else if (length !== undefined) framing = { kind: 'length', length: Number(length) };
  else framing = { kind: 'close' };
  const closes = connection.includes('close') || (http10 && !connection.includes('keep-alive'));
  return { status, reason: m[3] ?? '', forward, framing, reusable: !closes && framing.kind !== 'close' };
}

const Chunk = { Size: 0, Ext: 1, SizeLf: 2, Data: 3, DataCr: 4, DataLf: 5, TrailerStart: 6, TrailerLine: 7, TrailerLf: 8, FinalLf: 9, Done: 10 } as const;
type ChunkState = (typeof Chunk)[keyof typeof Chunk];

/**
 * Follows a chunked body byte by byte to find where it ends (the bytes are
 * forwarded unchanged). `feed` returns how many bytes of `b` belong to the body
 * (less than b.length when the body ended inside it), or -1 when the framing is broken.
 */
export class ChunkedTracker {
  private state: ChunkState = Chunk.Size;
  private size = 0;
  private digits = 0;
  private remaining = 0;
  /** bytes of the current extension or trailer line */
  private line = 0;

  get done(): boolean { return this.state === Chunk.Done; }

  feed(b: Buffer): number {
    let i = 0;
    const n = b.length;
    while (i < n) {
      switch (this.state) {
        case Chunk.Size: {
          const c = b[i]!;
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            if (++this.digits > 12) return -1;
            this.size = this.size * 16 + v;
            i++;
          } else if (this.digits === 0) return -1;
          else { this.state = Chunk.Ext; this.line = 0; }
          break;
        }
        case Chunk.Ext: { // chunk extensions up to CR
          const c = b[i++]!;
          if (c === 13) this.state = Chunk.SizeLf;
          else if (c === 10 || ++this.line > 4096) return -1;
          break;
        }
        case Chunk.SizeLf:
          if (b[i++] !== 10) return -1;
          if (this.size === 0) this.state = Chunk.TrailerStart;
          else { this.state = Chunk.Data; this.remaining = this.size; }
          break;
        case Chunk.Data: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (b[i++] !== 13) return -1;
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (b[i++] !== 10) return -1;
          this.state = Chunk.Size;
          this.size = 0;
          this.digits = 0;
          break;
        case Chunk.TrailerStart: {
          const c = b[i++]!;
          if (c === 13) this.state = Chunk.FinalLf;
          else if (c === 10) return -1;
          else { this.state = Chunk.TrailerLine; this.line = 1; }
          break;
        }
        case Chunk.TrailerLine: {
          const c = b[i++]!;
          if (c === 13) this.state = Chunk.TrailerLf;
          else if (c === 10 || ++this.line > 8192) return -1;
          break;
        }
        case Chunk.TrailerLf:
          if (b[i++] !== 10) return -1;
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (b[i++] !== 10) return -1;
          this.state = Chunk.Done;
          return i;
        case Chunk.Done:
          return i;
      }
    }
    return i;
  }
}
