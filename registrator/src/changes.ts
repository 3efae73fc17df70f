// "Something changed, look again": coalesces any number of pokes into one
// wake-up of the consumer. Sources use it to feed the reconciler. An idle wait
// removes its abort listener when it ends (core's untilWoken), so the signal
// does not collect one listener per wait.
import { untilWoken } from '@gantry/core';

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
        await untilWoken(signal, (wake) => { this.wake = wake; });
      }
      if (signal.aborted) return;
      this.dirty = false;
      yield;
    }
  }
}
