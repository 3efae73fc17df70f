// Hostile requests refused before any routing: request smuggling (both
// Content-Length and Transfer-Encoding, duplicate Content-Length, an unknown
// transfer coding, obs-fold), oversized headers, CR/LF or other control
// characters in values, absurd Host values. Node's parser (strict mode) refuses
// most at the socket (see parserReason); the rest is checked on the headers.
import type { IncomingMessage } from 'node:http';

/** a Host header value: a DNS name or a bracketed IPv6 address, with an optional port */
export const HOST_HEADER = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?|\[[0-9a-f:.]{2,45}\])(?::\d{1,5})?$/i;
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
export const MAX_HOST = 255;
const MAX_URL = 8192;

/** Why a parsed request is refused, or undefined when it is acceptable. */
export function hostileReason(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let cl = 0;
  let te = 0;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (CONTROL.test(value)) return `control character in header ${JSON.stringify(name.slice(0, 64))}`;
    switch (name.length) {
      case 4: if (name.toLowerCase() === 'host') hosts++; break;
      case 14: if (name.toLowerCase() === 'content-length') cl++; break;
      case 17: if (name.toLowerCase() === 'transfer-encoding') te++; break;
    }
  }
  if (cl > 0 && te > 0) return 'both Content-Length and Transfer-Encoding';
  if (cl > 1) return 'duplicate Content-Length';
  if (te > 1 || (te === 1 && req.headers['transfer-encoding']?.trim().toLowerCase() !== 'chunked')) return 'Transfer-Encoding other than a single chunked';
  if (hosts !== 1) return hosts === 0 ? 'no Host header' : 'duplicate Host header';
  const host = req.headers.host ?? '';
  if (host.length > MAX_HOST || !HOST_HEADER.test(host)) return 'absurd Host header';
  const url = req.url ?? '';
  if (url.length > MAX_URL) return 'request target too long';
  if (url[0] !== '/' && !(url === '*' && req.method === 'OPTIONS')) return 'request target not in origin form';
  if (CONTROL.test(url) || url.includes(' ')) return 'control character in request target';
  return undefined;
}

/** What Node's parser refused, in words (err.code is HPE_*). */
export function parserReason(code: string | undefined): string {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW': return 'oversized headers';
    case 'HPE_UNEXPECTED_CONTENT_LENGTH': return 'both Content-Length and Transfer-Encoding, or duplicate Content-Length';
    case 'HPE_INVALID_CONTENT_LENGTH': return 'invalid Content-Length';
    case 'HPE_INVALID_TRANSFER_ENCODING': return 'invalid Transfer-Encoding';
    case 'HPE_INVALID_HEADER_TOKEN': return 'invalid header (obs-fold, control character or bad name)';
    case 'HPE_LF_EXPECTED': case 'HPE_CR_EXPECTED': return 'bare CR or LF in the request head';
    case 'HPE_INVALID_CHUNK_SIZE': return 'invalid chunk size';
    case 'HPE_INVALID_METHOD': return 'invalid method';
    case 'HPE_INVALID_URL': return 'invalid request target';
    case 'HPE_INVALID_VERSION': return 'invalid HTTP version';
    case 'HPE_HEADERS_TIMEOUT': return 'headers not received in time';
    default: return `malformed request (${code ?? 'unknown'})`;
  }
}
