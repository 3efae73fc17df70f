// Mirroring: a copy of a request sent to another service, its answer discarded.
// The primary never waits for it: the copy is sent once the client's body has
// been read (the primary streams it meanwhile), within a bounded number of
// mirrors in flight and a bounded body buffer; anything over a bound is dropped
// and counted, never queued.
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher } from 'undici';

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
  /** proto://address:port */
  key: string;
}

export class Mirror {
  private inflight = 0;
  private readonly agent: Agent;
  private readonly o: MirrorOptions;
  private readonly ev: MirrorEvents;
  constructor(o: MirrorOptions, ev: MirrorEvents) {
    this.o = o;
    this.ev = ev;
    // undici, as the primary's data path: no response stream per copy (a discarding handler)
    this.agent = new Agent({ connections: o.maxInflight, pipelining: 1, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs, connect: { timeout: o.timeoutMs } });
  }

  get inFlight(): number { return this.inflight; }

  /**
   * Copies a request (path and headers as sent to the primary) to target. `body`: the
   * client's request when it has a body (call before the primary reads it), else undefined.
   */
  copy(service: string, method: string, body: IncomingMessage | undefined, target: MirrorTarget | undefined, path: string, headers: OutgoingHttpHeaders): void {
    if (!target) { this.ev.onDrop(service, 'no-instance'); return; }
    if (this.inflight >= this.o.maxInflight) { this.ev.onDrop(service, 'inflight'); return; }
    this.inflight++;
    let released = false;
    const release = (): void => { if (!released) { released = true; this.inflight--; } };
    const send = (body: Buffer | undefined): void => {
      const h: OutgoingHttpHeaders = { ...headers };
      if (body) { delete h['transfer-encoding']; h['content-length'] = String(body.length); }
      const handler: Dispatcher.DispatchHandler = {
        // undici wants every one of these (the answer is discarded)
        onRequestStart: () => undefined,
        onResponseStart: () => undefined,
        onResponseData: () => undefined,
        onResponseEnd: () => { release(); this.ev.onSent(service); },
        onResponseError: () => { if (!released) { release(); this.ev.onDrop(service, 'error'); } },
      };
      this.agent.dispatch({ origin: target.key, method, path, headers: h as Record<string, string | string[]>, body: body ?? null }, handler);
    };
    const req = body;
    if (!req) { send(undefined); return; }
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

  close(): void { void this.agent.destroy().catch(() => undefined); }
}
