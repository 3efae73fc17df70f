// The data path: one request forwarded to one upstream through its keep-alive
// pool, bodies streamed both ways with backpressure (pipe), with connect, header
// and idle timeouts. No policy here: the caller chose the upstream and decides
// what a failure means (retry, 502, 504).
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { clientResponseHeaders } from './headers.ts';
import type { Pool } from './pools.ts';

export interface ForwardTimeouts {
  connectMs: number;
  /** request sent → response headers */
  headerMs: number;
  /** no byte either way for this long */
  idleMs: number;
}

/**
 * connect: the upstream was never reached (refused, unreachable, connect timeout);
 * reset: the connection failed after it was made, before the response headers;
 * header-timeout / idle-timeout: the upstream was too slow;
 * body: the response failed after it had started going to the client.
 */
export type Failure = 'connect' | 'reset' | 'header-timeout' | 'idle-timeout' | 'body';

export interface ForwardResult {
  /** the upstream's status, 0 when no response came */
  status: number;
  failure: Failure | undefined;
  error: string | undefined;
  /** the response started going to the client: nothing else can be sent */
  responded: boolean;
  /** the request went out on a pooled (reused) connection */
  reused: boolean;
  /** the client went away first: not the upstream's fault */
  clientGone: boolean;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN']);

class Attempt {
  private done = false;
  private connected = false;
  private responded = false;
  private reused = false;
  private clientGone = false;
  private failure: Failure | undefined;
  private status = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly headerTimer: NodeJS.Timeout;
  private readonly up: http.ClientRequest;

  private readonly res: ServerResponse;
  private readonly pool: Pool;
  private readonly requestId: string;
  private readonly t: ForwardTimeouts;
  private readonly resolve: (r: ForwardResult) => void;

  constructor(
    req: IncomingMessage, res: ServerResponse, pool: Pool, path: string, headers: OutgoingHttpHeaders,
    hasBody: boolean, requestId: string, t: ForwardTimeouts, resolve: (r: ForwardResult) => void,
  ) {
    this.res = res;
    this.pool = pool;
    this.requestId = requestId;
    this.t = t;
    this.resolve = resolve;
    pool.inflight++;
    const u = pool.upstream;
    this.up = (u.proto === 'https' ? https : http).request({
      host: u.address, port: u.port, method: req.method, path, headers, agent: pool.agent, setHost: false,
    });
    this.headerTimer = setTimeout(() => this.fail('header-timeout', 'no response headers in time'), t.headerMs);
    this.up.on('socket', (s: Socket) => this.onSocket(s));
    this.up.on('response', (ur: IncomingMessage) => this.onResponse(ur));
    this.up.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
    this.up.on('close', () => { if (!this.responded) this.fail(this.connected ? 'reset' : 'connect', 'upstream connection closed'); });
    res.on('close', () => {
      if (res.writableFinished || this.done) return;
      this.clientGone = true;
      this.up.destroy();
      this.end(undefined, 'client closed the connection');
    });
    if (hasBody) req.pipe(this.up);
    else this.up.end();
  }

  private onSocket(s: Socket): void {
    if (!s.connecting) { this.connected = true; this.reused = true; }
    else {
      this.connectTimer = setTimeout(() => this.fail('connect', `connect timeout after ${this.t.connectMs} ms`), this.t.connectMs);
      s.once('connect', () => { this.connected = true; clearTimeout(this.connectTimer); });
    }
    this.up.setTimeout(this.t.idleMs, () => this.fail(this.responded ? 'idle-timeout' : 'header-timeout', `idle for ${this.t.idleMs} ms`));
  }

  private onResponse(ur: IncomingMessage): void {
    clearTimeout(this.headerTimer);
    this.status = ur.statusCode ?? 502;
    this.responded = true;
    this.res.writeHead(this.status, clientResponseHeaders(ur.headers, this.requestId));
    ur.on('error', () => this.fail('body', 'response body failed'));
    ur.on('close', () => { if (!ur.complete) this.fail('body', 'upstream closed mid-body'); });
    ur.pipe(this.res);
    this.res.on('finish', () => this.end(undefined, undefined));
  }

  private onError(err: NodeJS.ErrnoException): void {
    if (this.done) return;
    const code = err.code ?? '';
    const failure: Failure = this.failure ?? (!this.connected || CONNECT_ERRORS.has(code) ? 'connect' : this.responded ? 'body' : 'reset');
    this.fail(failure, `${code || 'error'}: ${err.message}`);
  }

  private fail(failure: Failure, error: string): void {
    if (this.done) return;
    this.failure = failure;
    this.up.destroy();
    if (this.responded) this.res.destroy();
    this.end(failure, error);
  }

  private end(failure: Failure | undefined, error: string | undefined): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.headerTimer);
    clearTimeout(this.connectTimer);
    this.pool.release();
    this.resolve({ status: this.status, failure, error, responded: this.responded, reused: this.reused, clientGone: this.clientGone });
  }
}

/** Forwards req to the pool's upstream; resolves when the exchange ended (well or not). */
export function forward(
  req: IncomingMessage, res: ServerResponse, pool: Pool, path: string, headers: OutgoingHttpHeaders,
  hasBody: boolean, requestId: string, t: ForwardTimeouts,
): Promise<ForwardResult> {
  return new Promise((resolve) => { new Attempt(req, res, pool, path, headers, hasBody, requestId, t, resolve); });
}
