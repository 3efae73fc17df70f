// Mirroring: a copy of a request sent to another service, its answer discarded.
// The primary never waits for it: the copy is sent once the client's body has
// been read (the primary streams it meanwhile), within a bounded number of
// mirrors in flight and a bounded body buffer; anything over a bound is dropped
// and counted, never queued.
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';

export interface MirrorOptions {
  maxInflight: number;
  maxBodyBytes: number;
  timeoutMs: number;
}

export type DropReason = 'inflight' | 'body' | 'no-instance' | 'error' | 'aborted';

export interface MirrorEvents {
  onSent: (service: string) => void;
  onDrop: (service: string, reason: DropReason) => void;
}

export interface MirrorTarget {
  address: string;
  port: number;
}

export class Mirror {
  private inflight = 0;
  private readonly agent: http.Agent;
  private readonly o: MirrorOptions;
  private readonly ev: MirrorEvents;
  constructor(o: MirrorOptions, ev: MirrorEvents) {
    this.o = o;
    this.ev = ev;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: o.maxInflight, maxFreeSockets: o.maxInflight, timeout: o.timeoutMs });
  }

  get inFlight(): number { return this.inflight; }

  /** Copies req (path and headers as sent to the primary) to target. Call before the primary reads the body. */
  copy(service: string, req: IncomingMessage, target: MirrorTarget | undefined, path: string, headers: OutgoingHttpHeaders, hasBody: boolean): void {
    if (!target) { this.ev.onDrop(service, 'no-instance'); return; }
    if (this.inflight >= this.o.maxInflight) { this.ev.onDrop(service, 'inflight'); return; }
    this.inflight++;
    let released = false;
    const release = (): void => { if (!released) { released = true; this.inflight--; } };
    const send = (body: Buffer | undefined): void => {
      const h: OutgoingHttpHeaders = { ...headers };
      if (body) { delete h['transfer-encoding']; h['content-length'] = body.length; }
      const up = http.request({ host: target.address, port: target.port, method: req.method, path, headers: h, agent: this.agent, setHost: false, timeout: this.o.timeoutMs });
      up.on('response', (r) => { r.resume(); r.on('end', release); r.on('error', release); r.on('close', release); this.ev.onSent(service); });
      up.on('timeout', () => up.destroy(new Error('mirror timeout')));
      up.on('error', () => { release(); this.ev.onDrop(service, 'error'); });
      up.end(body);
    };
    if (!hasBody) { send(undefined); return; }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const onData = (c: Buffer): void => {
      if (over) return;
      size += c.length;
      if (size > this.o.maxBodyBytes) { over = true; chunks.length = 0; return; }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => {
      req.off('data', onData);
      if (over) { release(); this.ev.onDrop(service, 'body'); return; }
      send(Buffer.concat(chunks, size));
    });
    req.once('close', () => { if (!req.complete && !released) { req.off('data', onData); release(); this.ev.onDrop(service, 'aborted'); } });
  }

  close(): void { this.agent.destroy(); }
}
