// Waiting on a long-lived AbortSignal without leaking listeners: every wait
// removes the abort listener it added, however it ends, so a loop that waits
// ten thousand times on the same signal leaves it as it found it.

/**
 * Resolves when `arm`'s wake function is called or the signal aborts (then it
 * resolves too: the caller checks `signal.aborted`). The abort listener is
 * removed in both cases.
 */
export function untilWoken(signal: AbortSignal, arm: (wake: () => void) => void): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    arm(done);
  });
}

