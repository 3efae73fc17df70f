// The data path: one request forwarded to one upstream through its keep-alive
// pool, bodies streamed both ways with backpressure, with connect, header and
// idle timeouts. No policy here: the caller chose the upstream and decides what
// a failure means (retry, 502, 504).
//
// Why undici's low-level Pool.dispatch (a handler object, no promise, no
// response stream) rather than node:http's ClientRequest + Agent: measured with
// wrk -t1 -c50 through a minimal proxy of each kind in front of the same HAProxy
// answering 200 (alternating runs, 4 s each, loaded machine), CPU per request
// (user + sys, /proc/<pid>/stat) was 67-81 µs with dispatch vs 107-136 µs with
// node:http; node:http's client adds per request a ClientRequest, an
// IncomingMessage stream, socket listeners and timers. undici's Pool.request and
// Pool.stream (a Readable per response) measured no better than node:http when
// the gateway was first built; dispatch avoids that stream.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import { clientResponseHeaders } from './headers.ts';
import type { Pool } from './pools.ts';

export interface ForwardTimeouts {
  connectMs: number;
  /** request sent → response headers */
  headerMs: number;
  /** no byte of the response body for this long */
  idleMs: number;
}

/**
 * connect: the upstream was never reached (refused, unreachable, connect timeout);
 * reset: the connection failed after it was made, before the response headers;
 * header-timeout / idle-timeout: the upstream was too slow;
 * body: the response failed after it had started going to the client;
 * invalid: the request could not be sent as it came (not the upstream's fault).
 */
export type Failure = 'connect' | 'reset' | 'header-timeout' | 'idle-timeout' | 'body' | 'invalid';

export interface ForwardResult {
  /** the upstream's status, 0 when no response came */
  status: number;
  failure: Failure | undefined;
  error: string | undefined;
  /** the response started going to the client: nothing else can be sent */
  responded: boolean;
  /** the client went away first: not the upstream's fault */
  clientGone: boolean;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

class ClientGone extends Error {}

class Attempt implements Dispatcher.DispatchHandler {
  private done = false;
  /** the request was handed to a connected socket */
  private sent = false;
  private responded = false;
  private clientGone = false;
  private status = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly onClientClose = (): void => {
    if (this.done || this.res.writableFinished) return;
    this.clientGone = true;
    this.controller?.abort(new ClientGone('client closed the connection'));
    this.end(undefined, 'client closed the connection');
  };
  private readonly onDrain = (): void => { this.controller?.resume(); };

  private readonly res: ServerResponse;
  private readonly pool: Pool;
  private readonly requestId: string;
  private readonly resolve: (r: ForwardResult) => void;

  constructor(
    req: IncomingMessage, res: ServerResponse, pool: Pool, path: string, headers: OutgoingHttpHeaders,
    hasBody: boolean, requestId: string, t: ForwardTimeouts, resolve: (r: ForwardResult) => void,
  ) {
    this.res = res;
    this.pool = pool;
    this.requestId = requestId;
    this.resolve = resolve;
    pool.inflight++;
    res.on('close', this.onClientClose);
    // the body through a PassThrough: undici destroys a body stream it gives up on,
    // which must not be the client's connection (it still gets our 502)
    const body = hasBody ? req.pipe(new PassThrough()) : null;
    pool.dispatcher.dispatch({
      method: req.method!, path, headers: headers as Record<string, string | string[]>, body,
      headersTimeout: t.headerMs, bodyTimeout: t.idleMs,
    }, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.sent = true;
    if (this.clientGone) controller.abort(new ClientGone('client closed the connection'));
  }

  /**
   * The upstream's status and headers, held until its first body byte (or its end): an upstream
   * that dies between its headers and its body (busybox httpd writes them apart; a container
   * killed in between) has sent the client nothing yet, so the request can still be retried.
   */
  private head: { status: number; headers: OutgoingHttpHeaders } | undefined;

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.controller = controller;
    if (statusCode < 200 || this.done) return; // 1xx: the client's own server answers 100-continue
    this.head = { status: statusCode, headers: clientResponseHeaders(headers, this.requestId) };
  }

  /** the held head goes to the client: from here on nothing else can be sent */
  private commit(): void {
    if (!this.head) return;
    this.status = this.head.status;
    this.responded = true;
    this.res.writeHead(this.head.status, this.head.headers);
    this.head = undefined;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return;
    this.commit();
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    if (this.done) return;
    this.commit();
    this.res.end();
    this.end(undefined, undefined);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.done || err instanceof ClientGone) return;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    let failure: Failure;
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') failure = 'invalid';
    else if (this.responded) failure = code === 'UND_ERR_BODY_TIMEOUT' ? 'idle-timeout' : 'body';
    else if (this.head && code === 'UND_ERR_BODY_TIMEOUT') failure = 'idle-timeout'; // headers came, then nothing
    else if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') failure = 'header-timeout';
    else if (!this.sent || CONNECT_ERRORS.has(code)) failure = 'connect';
    else failure = 'reset';
    if (this.responded) this.res.destroy();
    this.end(failure, `${code || 'error'}: ${err.message}`);
  }

  private end(failure: Failure | undefined, error: string | undefined): void {
    if (this.done) return;
    this.done = true;
    this.res.off('close', this.onClientClose);
    this.res.off('drain', this.onDrain);
    this.pool.release();
    this.resolve({ status: this.status, failure, error, responded: this.responded, clientGone: this.clientGone });
  }
}

/** Forwards req to the pool's upstream; resolves when the exchange ended (well or not). */
export function forward(
  req: IncomingMessage, res: ServerResponse, pool: Pool, path: string, headers: OutgoingHttpHeaders,
  hasBody: boolean, requestId: string, t: ForwardTimeouts,
): Promise<ForwardResult> {
  return new Promise((resolve) => { new Attempt(req, res, pool, path, headers, hasBody, requestId, t, resolve); });
}
