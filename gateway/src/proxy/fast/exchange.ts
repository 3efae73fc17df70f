// One fast-path request on one upstream connection: the request head written
// as is, the response head checked and rewritten (hop-by-hop headers out,
// X-Request-Id in), the body passed through unchanged with backpressure until
// its framing says it ended. Same failures and timeouts as forward.ts (connect,
// header, idle), so the gateway's retry and ejection rules apply alike.
import type { ForwardResult, ForwardTimeouts, Failure } from '../forward.ts';
import type { Pool } from '../pools.ts';
import { ChunkedTracker, parseResponseHead, type ResponseHead } from './head.ts';
import type { UpConn, UpHandler } from './upstream.ts';

/** the client side of an exchange (fast/connection.ts) */
export interface ClientSink {
  /** false when the client's buffer is full: wait for onDrain */
  write(b: Buffer | string): boolean;
  /** two pieces in one write */
  write2(a: string, b: Buffer | string): boolean;
  onDrain(f: () => void): void;
  /** set while an exchange runs: called when the client goes away */
  abort: (() => void) | undefined;
}

export interface FastResult extends ForwardResult {
  /** the client's connection must close after this answer (close-delimited body, cut answer) */
  closeClient: boolean;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_RESPONSE_HEAD = 65_536;

/** the exchange's states */
const St = { Wait: 0, Head: 1, Held: 2, Body: 3, Done: 4 } as const;
type State = (typeof St)[keyof typeof St];

class Exchange implements UpHandler {
  private st: State = St.Wait;
  private conn: UpConn | undefined;
  private reused = false;
  private got = false;
  private buf: Buffer | undefined;
  private head: ResponseHead | undefined;
  private remaining = 0;
  private chunks: ChunkedTracker | undefined;
  private reusable = false;
  private responded = false;
  private status = 0;
  private readonly resume = (): void => { this.conn?.socket.resume(); };

  private readonly client: ClientSink;
  private readonly pool: Pool;
  private readonly request: string;
  private readonly method: string;
  private readonly requestId: string;
  private readonly closeAfter: boolean;
  private readonly t: ForwardTimeouts;
  private readonly resolve: (r: FastResult) => void;
  /** a reused connection the upstream had closed: the request goes again on a new one, once */
  private staleRetried = false;

  private readonly extraHead: string;
  constructor(client: ClientSink, pool: Pool, request: string, method: string, requestId: string, closeAfter: boolean, t: ForwardTimeouts, extraHead: string, resolve: (r: FastResult) => void) {
    this.extraHead = extraHead;
    this.client = client;
    this.pool = pool;
    this.request = request;
    this.method = method;
    this.requestId = requestId;
    this.closeAfter = closeAfter;
    this.t = t;
    this.resolve = resolve;
    pool.inflight++;
    client.abort = () => this.clientGone();
    this.start(false);
  }

  private start(fresh: boolean): void {
    const c = this.pool.raw.acquire(fresh);
    if (c) this.begin(c);
    else this.pool.raw.wait((w) => this.begin(w));
  }

  private begin(c: UpConn): void {
    if (this.st === St.Done) { this.pool.raw.release(c, !c.closed); return; }
    this.conn = c;
    c.handler = this;
    this.reused = c.requests > 0;
    if (c.connected) this.send();
    else c.deadline = Date.now() + this.t.connectMs;
  }

  onConnect(): void { if (this.st === St.Wait) this.send(); }

  private send(): void {
    const c = this.conn!;
    c.requests++;
    this.st = St.Head;
    c.deadline = Date.now() + this.t.headerMs;
    c.socket.write(this.request);
  }

  onData(b: Buffer): void {
    this.got = true;
    if (this.st === St.Head) {
      this.buf = this.buf ? Buffer.concat([this.buf, b]) : b;
      this.parseHead();
    } else if (this.st === St.Held) {
      this.commit();
      this.body(b);
    } else if (this.st === St.Body) this.body(b);
  }

  private parseHead(): void {
    for (;;) {
      const buf = this.buf!;
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        if (buf.length > MAX_RESPONSE_HEAD) this.fail('reset', 'response head too large');
        return;
      }
      const h = parseResponseHead(buf.toString('latin1', 0, end), this.method);
      if (typeof h === 'string') { this.fail('reset', `bad response from upstream: ${h}`); return; }
      const rest = buf.length > end + 4 ? buf.subarray(end + 4) : undefined;
      this.buf = rest;
      if (h.status < 200) { // 100 Continue, 103 Early Hints: not passed on
        if (!rest) return;
        continue;
      }
      this.buf = undefined;
      this.head = h;
      this.reusable = h.reusable;
      const f = h.framing;
      if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
        this.commit();
        if (rest) this.reusable = false; // more than the answer: do not reuse
        this.finish();
        return;
      }
      if (f.kind === 'length') this.remaining = f.length;
      else if (f.kind === 'chunked') this.chunks = new ChunkedTracker();
      if (!rest) { // held until the first body byte (see forward.ts)
        this.st = St.Held;
        this.conn!.deadline = Date.now() + this.t.idleMs;
        return;
      }
      this.commit();
      this.body(rest);
      return;
    }
  }

  /** the response head goes to the client: from here on nothing else can be sent */
  private commit(): void {
    const h = this.head!;
    this.st = St.Body;
    this.responded = true;
    this.status = h.status;
    const close = this.closeAfter || h.framing.kind === 'close';
    this.pending = `HTTP/1.1 ${h.status} ${h.reason}\r\n${h.forward}${this.extraHead}x-request-id: ${this.requestId}\r\n${close ? 'connection: close\r\n' : ''}\r\n`;
  }

  /** the response head, written together with the first body bytes (one write, not two) */
  private pending: string | undefined;

  private body(b: Buffer): void {
    const f = this.head!.framing;
    if (f.kind !== 'length' || this.remaining !== b.length) this.conn!.deadline = Date.now() + this.t.idleMs; // the body may go on
    if (f.kind === 'length') {
      if (b.length <= this.remaining) {
        this.remaining -= b.length;
        this.write(b);
      } else {
        this.write(b.subarray(0, this.remaining));
        this.remaining = 0;
        this.reusable = false; // more than Content-Length said
      }
      if (this.remaining === 0) this.finish();
    } else if (f.kind === 'chunked') {
      const k = this.chunks!.feed(b);
      if (k < 0) { this.fail('body', 'broken chunked framing from upstream'); return; }
      this.write(k === b.length ? b : b.subarray(0, k));
      if (this.chunks!.done) {
        if (k < b.length) this.reusable = false;
        this.finish();
      }
    } else this.write(b);
  }

  private write(x: Buffer | string): void {
    let ok: boolean;
    const p = this.pending;
    if (p !== undefined) {
      this.pending = undefined;
      ok = this.client.write2(p, x);
    } else ok = this.client.write(x);
    if (!ok) {
      const s = this.conn?.socket;
      if (s && !s.isPaused()) {
        s.pause();
        this.client.onDrain(this.resume);
      }
    }
  }

  onTimeout(): void {
    if (this.st === St.Done) return;
    const c = this.conn!;
    if (!c.connected) this.fail('connect', 'UND_ERR_CONNECT_TIMEOUT: connect timeout');
    else if (this.st === St.Head) this.fail('header-timeout', 'no response head in time');
    else this.fail('idle-timeout', 'upstream body stalled');
  }

  onClose(err: NodeJS.ErrnoException | undefined): void {
    if (this.st === St.Done) return;
    const c = this.conn!;
    if ((this.st === St.Body || (this.st === St.Held && !err)) && this.head!.framing.kind === 'close') {
      if (this.st === St.Held) this.commit(); // an empty close-delimited body
      this.reusable = false;
      this.finish(true);
      return;
    }
    const code = err?.code ?? 'closed';
    if (!c.connected) { this.fail('connect', `${code}: ${err?.message ?? 'connection closed'}`); return; }
    if (this.reused && !this.got && !this.staleRetried && this.st === St.Head) {
      // the upstream closed a kept-alive connection as we reused it: not its failure
      this.staleRetried = true;
      this.conn = undefined;
      this.st = St.Wait;
      this.start(true);
      return;
    }
    this.fail(this.responded ? 'body' : 'reset', `${code}: ${err?.message ?? 'upstream closed the connection'}`);
  }

  private clientGone(): void {
    if (this.st === St.Done) return;
    this.end({ status: this.status, failure: undefined, error: 'client closed the connection', responded: this.responded, clientGone: true, closeClient: true }, false);
  }

  private fail(failure: Failure, error: string): void {
    this.end({ status: this.status, failure, error, responded: this.responded, clientGone: false, closeClient: this.responded }, false);
  }

  private finish(closeClient = false): void {
    if (this.pending !== undefined) { this.client.write(this.pending); this.pending = undefined; }
    this.end({
      status: this.status, failure: undefined, error: undefined, responded: true, clientGone: false,
      closeClient: closeClient || this.closeAfter || this.head!.framing.kind === 'close',
    }, this.reusable);
  }

  private end(r: FastResult, reusable: boolean): void {
    this.st = St.Done;
    this.client.abort = undefined;
    const c = this.conn;
    this.conn = undefined;
    if (c) {
      c.deadline = 0;
      if (c.socket.isPaused()) c.socket.resume();
      if (reusable) this.pool.raw.release(c, true);
      else { c.handler = undefined; c.socket.destroy(); }
    }
    this.pool.release();
    this.resolve(r);
  }
}

/**
 * Sends `request` (a whole request head, no body) to the pool's upstream; resolves when the
 * exchange ended. `extraHead`: header lines (each ending in CRLF) added to the answer.
 */
export function exchange(client: ClientSink, pool: Pool, request: string, method: string, requestId: string, closeAfter: boolean, t: ForwardTimeouts, extraHead = ''): Promise<FastResult> {
  return new Promise((resolve) => { new Exchange(client, pool, request, method, requestId, closeAfter, t, extraHead, resolve); });
}
