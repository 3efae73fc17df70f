// Outlier ejection: an upstream failing `consecutive` times in a row is ejected
// (no traffic) for base × 2^(ejections-1), at most max; then half-open: one probe
// request at a time goes to it; a success brings it back, a failure ejects it again
// for longer. The state outlives route-table swaps (keyed by proto://address:port).

export interface OutlierOptions {
  consecutive: number;
  baseEjectMs: number;
  maxEjectMs: number;
}

export class UpstreamHealth {
  consecutive = 0;
  ejections = 0;
  ejectedUntil = 0;
  /** ejected (possibly half-open) */
  ejected = false;
  /** a half-open probe is in flight */
  probing = false;
  readonly key: string;
  constructor(key: string) { this.key = key; }
}

export interface OutlierEvents {
  onEject?: (h: UpstreamHealth, forMs: number) => void;
  onRecover?: (h: UpstreamHealth) => void;
}

export class OutlierDetector {
  private readonly states = new Map<string, UpstreamHealth>();
  private readonly o: OutlierOptions;
  private readonly ev: OutlierEvents;
  constructor(o: OutlierOptions, ev: OutlierEvents = {}) { this.o = o; this.ev = ev; }

  state(key: string): UpstreamHealth {
    let s = this.states.get(key);
    if (!s) { s = new UpstreamHealth(key); this.states.set(key, s); }
    return s;
  }

  /** forgets upstreams no route holds any more */
  forget(keys: Iterable<string>): void {
    for (const k of keys) this.states.delete(k);
  }

  /** may a request go to it now; a half-open upstream takes one probe at a time (the caller then owns the probe) */
  admit(h: UpstreamHealth, now: number): boolean {
    if (!h.ejected) return true;
    if (now < h.ejectedUntil || h.probing) return false;
    h.probing = true;
    return true;
  }

  success(h: UpstreamHealth): void {
    h.consecutive = 0;
    if (h.ejected) {
      h.ejected = false;
      h.probing = false;
      h.ejections = 0;
      this.ev.onRecover?.(h);
    }
  }

  /** a failure; true when it ejected the upstream */
  failure(h: UpstreamHealth, now: number): boolean {
    h.consecutive++;
    if (h.ejected) {
      if (!h.probing) return false; // failures of requests sent before the ejection
      h.probing = false;
    } else if (h.consecutive < this.o.consecutive) {
      return false;
    }
    h.ejected = true;
    h.ejections++;
    const forMs = Math.min(this.o.maxEjectMs, this.o.baseEjectMs * 2 ** (h.ejections - 1));
    h.ejectedUntil = now + forMs;
    this.ev.onEject?.(h, forMs);
    return true;
  }

  ejectedCount(): number {
    let n = 0;
    for (const s of this.states.values()) if (s.ejected) n++;
    return n;
  }
}
