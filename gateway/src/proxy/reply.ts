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
