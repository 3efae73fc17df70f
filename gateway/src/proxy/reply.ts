// Answers the gateway gives itself (no upstream): a short JSON body naming the
// request id, which is also in X-Request-Id and in the access log line.
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

export function replyError(res: ServerResponse, status: number, requestId: string, message: string, extra?: Record<string, string>): void {
  if (res.headersSent) { res.destroy(); return; }
  const body = `${JSON.stringify({ status, error: message, requestId })}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/** the same answer written raw on a socket (clientError, refused upgrades); the connection is closed */
export function replyOnSocket(socket: Duplex, status: number, requestId: string, message: string): void {
  if (!socket.writable) { socket.destroy(); return; }
  const body = `${JSON.stringify({ status, error: message, requestId })}\n`;
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`);
}

/** the same answer on a fast-path connection, which stays open unless `close` */
export function replyRaw(write: (s: string) => void, status: number, requestId: string, message: string, close: boolean, extra = ''): void {
  // ASCII only (the head and body are written as latin1): anything else as a JSON escape
  const body = `${JSON.stringify({ status, error: message, requestId }).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
  write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\ncache-control: no-store\r\n${extra}${close ? 'connection: close\r\n' : ''}\r\n${body}`);
}
