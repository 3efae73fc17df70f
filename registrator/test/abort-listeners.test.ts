// An idle wait on a long-lived AbortSignal must not leave a listener behind:
// after 10,000 idle waits the signal's abort listeners are as many as before
// (events.getEventListeners). In-memory source and sink: the waits under test
// are the reconciler's and the change signal's own, not an engine's.
import test from 'ava';
import { getEventListeners } from 'node:events';
import { createLogger, type ServiceInstance } from '@gantry/core';
import { ChangeSignal } from '../src/changes.ts';
import { Reconciler } from '../src/reconciler.ts';

const WAITS = 10_000;

test('ChangeSignal: 10,000 idle waits leave the abort signal with the listeners it had', async (t) => {
  const ac = new AbortController();
  const before = getEventListeners(ac.signal, 'abort').length;
  const changes = new ChangeSignal();
  const it = changes.stream(ac.signal)[Symbol.asyncIterator]();
  let waits = 0;
  for (let i = 0; i < WAITS; i++) {
    const next = it.next(); // idle: nothing poked yet, so the stream waits
    setImmediate(() => changes.poke());
    const r = await next;
    t.false(r.done ?? false);
    waits++;
  }
  t.is(waits, WAITS);
  t.is(getEventListeners(ac.signal, 'abort').length, before, 'listeners on the signal after 10,000 waits');
  ac.abort();
  t.true((await it.next()).done ?? false);
});

test('Reconciler: 10,000 idle waits between passes leave the abort signal with the listeners it had', async (t) => {
  const ac = new AbortController();
  const source = new ChangeSignal();
  let passes = 0;
  let settle!: () => void;
  const finished = new Promise<void>((r) => { settle = r; });
  const r = new Reconciler({
    owner: 'o' as never, log: createLogger({ component: 'test', level: 'silent' }),
    debounceMs: 0, resyncMs: 3_600_000,
    source: { kind: 'docker', snapshot: () => Promise.resolve([] as ServiceInstance[]), changes: (s) => source.stream(s) },
    sink: { owned: () => Promise.resolve([]), register: () => Promise.resolve(), deregister: () => Promise.resolve() },
    // each pass pokes the source once the reconciler is idle again: one idle wait a pass
    onPass: () => { if (++passes > WAITS) settle(); else setImmediate(() => source.poke()); },
  });
  const run = r.run(ac.signal);
  await finished;
  // the counts are taken while the reconciler and the source's stream are both waiting
  const during = getEventListeners(ac.signal, 'abort').length;
  t.true(r.passCount > WAITS, `${r.passCount} passes`);
  // one waiting reconciler + one waiting stream: a fixed number, not one a wait
  t.true(during <= 2, `${during} abort listeners on the signal after ${r.passCount} passes`);
  ac.abort();
  await run;
});
