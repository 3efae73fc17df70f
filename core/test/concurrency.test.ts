import test from 'ava';
import { mapLimit } from '../src/index.ts';

test('mapLimit: never more than `limit` calls in flight, results in the order of the items', async (t) => {
  let inFlight = 0;
  let peak = 0;
  const items = Array.from({ length: 50 }, (_, i) => i);
  const out = await mapLimit(items, 4, async (i) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, (i * 7) % 5));
    inFlight--;
    return i * 2;
  });
  t.deepEqual(out, items.map((i) => i * 2));
  t.is(peak, 4);
});

test('mapLimit: a rejection rejects the whole and starts no further call; a limit below 1 runs one at a time', async (t) => {
  const started: number[] = [];
  await t.throwsAsync(mapLimit([0, 1, 2, 3, 4, 5], 1, async (i) => {
    started.push(i);
    if (i === 2) throw new Error('no 2');
    return i;
  }), { message: 'no 2' });
  t.deepEqual(started, [0, 1, 2]);
  t.deepEqual(await mapLimit([1, 2, 3], 0, (i) => Promise.resolve(i)), [1, 2, 3]);
  t.deepEqual(await mapLimit([], 8, (i: number) => Promise.resolve(i)), []);
});
