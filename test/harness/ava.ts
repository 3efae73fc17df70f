// Glue between ava and the engines: stop them after the file, and print each
// engine's log tail when a test in the file failed.
import type { TestFn } from 'ava';

export interface HasLog { readonly name?: string; tail(lines?: number): string; stop(): Promise<void> }

/**
 * Registers engines for cleanup; returns a function to add more. When any test in
 * the file fails, the tail of each engine's log is printed with the failure.
 */
export function manageEngines(test: TestFn<unknown>): (name: string, e: HasLog) => void {
  const engines: Array<[string, HasLog]> = [];
  test.afterEach.always((t) => {
    if (!t.passed) {
      for (const [name, e] of engines) t.log(`--- ${name} log tail ---\n${e.tail(30)}`);
    }
  });
  test.after.always(async () => {
    await Promise.allSettled(engines.map(([, e]) => e.stop()));
  });
  return (name, e) => { engines.push([name, e]); };
}
