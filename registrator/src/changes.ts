// "Something changed, look again": coalesces any number of pokes into one
// wake-up of the consumer. Sources use it to feed the reconciler.
export class ChangeSignal {
  private dirty = false;
  private wake: (() => void) | undefined;

  poke(): void {
    this.dirty = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Yields once per burst of pokes, until the signal aborts. */
  async *stream(signal: AbortSignal): AsyncIterable<void> {
    while (!signal.aborted) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
      if (signal.aborted) return;
      this.dirty = false;
      yield;
    }
  }
}
