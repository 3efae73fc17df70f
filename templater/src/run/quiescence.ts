// Quiescence, as consul-template's `wait min:max`: after a change, a template
// waits for min of quiet, but never more than max after the first change of
// the burst; then it fires once.
export class Quiescence {
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly fire: () => void;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt: number | undefined;

  constructor(opts: { minMs: number; maxMs: number; fire: () => void }) {
    this.minMs = opts.minMs;
    this.maxMs = opts.maxMs;
    this.fire = opts.fire;
  }

  /** a change arrived */
  poke(now = Date.now()): void {
    this.firstChangeAt ??= now;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.minMs, this.firstChangeAt + this.maxMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstChangeAt = undefined;
      this.fire();
    }, delay);
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.firstChangeAt = undefined;
  }
}
