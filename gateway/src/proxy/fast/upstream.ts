// The fast path's keep-alive connections to one upstream: plain sockets (TLS
// for proto=https) reused last-in first-out, so idle ones age out. Each socket
// has one set of listeners for its whole life; they call whichever exchange
// (fast/exchange.ts) owns the socket at the moment.
import net from 'node:net';
import tls from 'node:tls';
import type { UpstreamAddress } from '../pools.ts';

export interface UpHandler {
  onConnect(): void;
  onData(b: Buffer): void;
  onTimeout(): void;
  onClose(err: Error | undefined): void;
}

export interface RawPoolOptions {
  maxSockets: number;
  idleTimeoutMs: number;
}

/**
 * Every open fast-path upstream connection, for the deadline sweep: one timer
 * for all of them instead of re-arming a socket timer a few times per request.
 */
const live = new Set<UpConn>();
let sweeper: NodeJS.Timeout | undefined;
/** how often deadlines are checked: timeouts fire up to this much late */
export const SWEEP_MS = 50;

function sweep(): void {
  const now = Date.now();
  for (const c of live) {
    if (c.deadline !== 0 && now >= c.deadline) {
      c.deadline = 0;
      if (c.handler) c.handler.onTimeout();
      else c.socket.destroy(); // idle too long
    }
  }
  if (live.size === 0 && sweeper) { clearInterval(sweeper); sweeper = undefined; }
}

export class UpConn {
  handler: UpHandler | undefined;
  /** Date.now() after which the connection's current wait has lasted too long (0: none) */
  deadline = 0;
  connected = false;
  closed = false;
  /** requests this connection has carried */
  requests = 0;
  private err: Error | undefined;
  readonly socket: net.Socket;

  constructor(pool: RawPool) {
    const u = pool.upstream;
    const host = u.address.startsWith('[') ? u.address.slice(1, -1) : u.address;
    const s = u.proto === 'https'
      ? tls.connect({ host, port: u.port, rejectUnauthorized: !u.tlsSkipVerify, ...(net.isIP(host) ? {} : { servername: host }) })
      : net.connect({ host, port: u.port });
    this.socket = s;
    live.add(this);
    if (!sweeper) { sweeper = setInterval(sweep, SWEEP_MS); sweeper.unref(); }
    s.setNoDelay(true);
    s.once(u.proto === 'https' ? 'secureConnect' : 'connect', () => { this.connected = true; this.handler?.onConnect(); });
    s.on('data', (b: Buffer) => {
      if (this.handler) this.handler.onData(b);
      else s.destroy(); // an idle connection has nothing to say
    });
    s.on('error', (e: Error) => { this.err = e; });
    s.on('close', () => {
      this.closed = true;
      live.delete(this);
      pool.gone(this);
      const h = this.handler;
      this.handler = undefined;
      h?.onClose(this.err);
    });
  }
}

export class RawPool {
  private readonly idle: UpConn[] = [];
  private readonly waiters: Array<(c: UpConn) => void> = [];
  private open = 0;
  draining = false;
  readonly upstream: UpstreamAddress;
  private readonly o: RawPoolOptions;
  constructor(upstream: UpstreamAddress, o: RawPoolOptions) {
    this.upstream = upstream;
    this.o = o;
  }

  /** an idle connection (unless `fresh`) or a new one; undefined when the pool is full (then `wait`) */
  acquire(fresh: boolean): UpConn | undefined {
    if (!fresh) {
      let c: UpConn | undefined;
      while ((c = this.idle.pop())) if (!c.closed) return c;
    }
    if (this.open >= this.o.maxSockets) return undefined;
    this.open++;
    return new UpConn(this);
  }

  wait(give: (c: UpConn) => void): void { this.waiters.push(give); }

  /** the exchange on c is over; a reusable connection is kept (or handed to a waiter) */
  release(c: UpConn, reusable: boolean): void {
    c.handler = undefined;
    if (!reusable || c.closed || this.draining) { c.socket.destroy(); return; }
    const w = this.waiters.shift();
    if (w) { w(c); return; }
    c.deadline = Date.now() + this.o.idleTimeoutMs;
    this.idle.push(c);
  }

  gone(c: UpConn): void {
    this.open--;
    const i = this.idle.indexOf(c);
    if (i !== -1) this.idle.splice(i, 1);
    if (this.waiters.length && this.open < this.o.maxSockets) { // a waiting request is served even while draining
      this.open++;
      this.waiters.shift()!(new UpConn(this));
    }
  }

  get openCount(): number { return this.open; }

  /** closes idle connections; busy ones close when their exchange ends (draining) */
  close(): void {
    this.draining = true;
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }

  destroy(): void {
    this.close();
  }
}
