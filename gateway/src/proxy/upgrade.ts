// Upgrade pass-through (WebSocket and any other `Upgrade`): the request goes to
// the upstream on a connection of its own; on 101 both sockets are piped to
// each other (backpressure both ways), anything else is relayed as an answer.
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { clientResponseHeaders } from './headers.ts';
import type { UpstreamAddress } from './pools.ts';

export interface UpgradeResult {
  status: number;
  failure: 'connect' | 'reset' | undefined;
  error: string | undefined;
}

function headBlock(status: number, message: string, headers: OutgoingHttpHeaders): string {
  let s = `HTTP/1.1 ${status} ${message}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) s += `${k}: ${String(one)}\r\n`;
  }
  return `${s}\r\n`;
}

export function forwardUpgrade(
  req: IncomingMessage, client: Duplex, head: Buffer, u: UpstreamAddress, path: string,
  headers: OutgoingHttpHeaders, requestId: string, connectTimeoutMs: number,
): Promise<UpgradeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: UpgradeResult): void => { if (!settled) { settled = true; resolve(r); } };
    const up = (u.proto === 'https' ? https : http).request({
      host: u.address, port: u.port, method: req.method, path, headers, agent: false, setHost: false,
      ...(u.proto === 'https' ? { rejectUnauthorized: !u.tlsSkipVerify } : {}),
    });
    let connected = false;
    const timer = setTimeout(() => { if (!connected) up.destroy(new Error(`connect timeout after ${connectTimeoutMs} ms`)); }, connectTimeoutMs);
    up.on('socket', (s) => s.once('connect', () => { connected = true; clearTimeout(timer); }));
    up.on('upgrade', (ur, upSocket, upHead) => {
      clearTimeout(timer);
      const h = { ...clientResponseHeaders(ur.headers, requestId), connection: 'Upgrade', upgrade: ur.headers.upgrade };
      client.write(headBlock(101, ur.statusMessage ?? 'Switching Protocols', h));
      if (upHead.length) client.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.on('error', () => client.destroy());
      client.on('error', () => upSocket.destroy());
      upSocket.on('close', () => client.destroy());
      client.on('close', () => upSocket.destroy());
      upSocket.pipe(client);
      client.pipe(upSocket);
      settle({ status: 101, failure: undefined, error: undefined });
    });
    up.on('response', (ur) => {
      clearTimeout(timer);
      const h = { ...clientResponseHeaders(ur.headers, requestId), connection: 'close' };
      client.write(headBlock(ur.statusCode ?? 502, ur.statusMessage ?? '', h));
      ur.pipe(client);
      settle({ status: ur.statusCode ?? 502, failure: undefined, error: undefined });
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      settle({ status: 0, failure: connected ? 'reset' : 'connect', error: `${err.code ?? 'error'}: ${err.message}` });
    });
    client.on('close', () => up.destroy());
    up.end();
  });
}
