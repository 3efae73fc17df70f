// The gateway's listening socket: the fast path reads each client connection
// itself. A request head it accepts (fast/head.ts) is routed and forwarded on
// a plain upstream socket (fast/exchange.ts); at the first request it does not
// take (a body, an upgrade, HTTP/1.0, anything malformed), the connection is
// handed to Node's HTTP server for the rest of its life, with the bytes read so
// far put back first.
// Why: Node's HTTP server alone costs about as much CPU per request as HAProxy's
// whole proxy path; measured numbers are in the commit and the gateway README.
import net from 'node:net';
import type http from 'node:http';
import { parseRequestHead, type HandOff, type RequestHead } from './head.ts';
import type { ClientSink } from './exchange.ts';

export interface FastFrontOptions {
  maxHeaderBytes: number;
  /** a request head must arrive within this once it has begun */
  headerTimeoutMs: number;
  /** an idle keep-alive connection is closed after this */
  idleTimeoutMs: number;
  /** Node's server, which takes the connections handed off */
  http: http.Server;
  /** routes and forwards one request: resolves true when the connection must close after it */
  serve: (client: FastClient, head: RequestHead) => Promise<boolean>;
  onHandOff: (reason: HandOff) => void;
  /** a head did not arrive in time: answer 408 on the socket */
  onHeadTimeout: (socket: net.Socket) => void;
}

const CRLF2 = Buffer.from('\r\n\r\n');

export class FastClient implements ClientSink {
  abort: (() => void) | undefined;
  private buf: Buffer | undefined;
  private busy = false;
  /** handed off or closed: no longer ours */
  private over = false;
  private drainWaiter: (() => void) | undefined;
  /** when the connection last became idle, or when the current partial head began */
  since = Date.now();
  readonly socket: net.Socket;
  private readonly front: FastFront;

  private readonly onData = (b: Buffer): void => {
    if (this.over) return; // closing: whatever else the client sends is not kept
    if (this.buf) this.buf = Buffer.concat([this.buf, b]);
    else { this.buf = b; if (!this.busy) this.since = Date.now(); }
    if (this.busy) {
      if (this.buf.length > this.front.o.maxHeaderBytes) this.socket.pause(); // pipelined requests pile up: wait
      return;
    }
    this.next();
  };
  private readonly drained = (): void => {
    const f = this.drainWaiter;
    this.drainWaiter = undefined;
    f?.();
  };
  private readonly onClose = (): void => {
    this.over = true;
    this.front.conns.delete(this);
    this.abort?.();
  };
  private readonly onError = (): void => { /* 'close' follows */ };

  constructor(socket: net.Socket, front: FastFront) {
    this.socket = socket;
    this.front = front;
    socket.on('data', this.onData);
    socket.on('drain', this.drained);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /** strings are heads: latin1, byte for byte as the upstream sent them */
  write(b: Buffer | string): boolean { return typeof b === 'string' ? this.socket.write(b, 'latin1') : this.socket.write(b); }
  /** a head and the first body bytes in one buffer: one write (one syscall), not two */
  write2(a: string, b: Buffer | string): boolean {
    if (typeof b === 'string') return this.socket.write(a + b, 'latin1');
    const out = Buffer.allocUnsafe(a.length + b.length);
    out.write(a, 0, 'latin1');
    b.copy(out, a.length);
    return this.socket.write(out);
  }
  onDrain(f: () => void): void { this.drainWaiter = f; }

  /** the remote address, as Node's IncomingMessage.socket has it */
  get remoteAddress(): string { return this.socket.remoteAddress ?? ''; }

  private next(): void {
    while (!this.busy && !this.over && this.buf) {
      const buf = this.buf;
      const max = this.front.o.maxHeaderBytes;
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        if (buf.length > max) this.handOff('too-large');
        return;
      }
      if (end + 4 > max) { this.handOff('too-large'); return; }
      const head = parseRequestHead(buf.toString('latin1', 0, end));
      if (typeof head === 'string') { this.handOff(head); return; }
      const r = this.front.o.serve(this, head);
      this.buf = buf.length > end + 4 ? buf.subarray(end + 4) : undefined;
      this.busy = true;
      void r.then((close) => this.after(close || head.close), () => this.after(true));
    }
  }

  private after(close: boolean): void {
    this.busy = false;
    if (this.over) return;
    if (close) {
      this.over = true;
      this.front.conns.delete(this);
      this.socket.end();
      this.socket.destroySoon();
      return;
    }
    this.since = Date.now();
    if (this.socket.isPaused()) this.socket.resume();
    this.next();
  }

  /** called each second: an idle connection past the keep-alive timeout is closed; a head too slow gets 408 */
  sweep(now: number): void {
    if (this.busy || this.over) return;
    if (this.buf) {
      if (now - this.since > this.front.o.headerTimeoutMs) {
        this.over = true;
        this.front.conns.delete(this);
        this.front.o.onHeadTimeout(this.socket);
      }
    } else if (now - this.since > this.front.o.idleTimeoutMs) this.close();
  }

  close(): void {
    this.over = true;
    this.front.conns.delete(this);
    this.socket.destroy();
  }

  get idle(): boolean { return !this.busy && !this.buf; }

  private handOff(reason: HandOff): void {
    this.over = true;
    this.front.conns.delete(this);
    const s = this.socket;
    s.pause();
    s.off('data', this.onData);
    s.off('drain', this.drained);
    s.off('close', this.onClose);
    s.off('error', this.onError);
    if (this.buf) s.unshift(this.buf);
    this.buf = undefined;
    // Node's server reads a fresh socket's handle directly (bypassing the stream);
    // bytes put back with unshift sit in the stream, so it must read through it
    const handle = (s as unknown as { _handle?: { _consumed?: boolean } })._handle;
    if (handle) handle._consumed = true;
    this.front.o.onHandOff(reason);
    this.front.o.http.emit('connection', s);
    process.nextTick(() => s.resume());
  }
}

export class FastFront {
  readonly server: net.Server;
  readonly conns = new Set<FastClient>();
  private readonly timer: NodeJS.Timeout;
  readonly o: FastFrontOptions;

  constructor(o: FastFrontOptions) {
    this.o = o;
    this.server = net.createServer({ noDelay: true }, (s) => { this.conns.add(new FastClient(s, this)); });
    this.timer = setInterval(() => {
      const now = Date.now();
      for (const c of this.conns) c.sweep(now);
    }, 1000);
    this.timer.unref();
  }

  /** stops listening; idle connections close now */
  close(): void {
    this.server.close();
    clearInterval(this.timer);
    for (const c of this.conns) if (c.idle) c.close();
  }

  closeAll(): void {
    for (const c of this.conns) c.close();
  }
}
