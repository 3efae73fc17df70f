// Policy pieces on their own: KV parsing (errors name the key), subset choice
// (split, header/cookie match, blue/green), outlier ejection with half-open
// recovery, the retry budget and rule, the local rate-limit window.
import test from 'ava';
import { parsePolicies, OutlierDetector, LocalWindows, rateLimitHeaders } from '@gantry/gateway';
import { compileSelector, chooseSet, pickInstance } from '../src/policy/select.ts';
import { RetryBudget, retriable } from '../src/policy/retry.ts';

const outliers = () => new OutlierDetector({ consecutive: 3, baseEjectMs: 1000, maxEjectMs: 8000 });

test('KV policies: valid ones parsed, bad ones named by key (others unaffected), active switch', (t) => {
  const p = parsePolicies(new Map([
    ['policy/web', JSON.stringify({ subsets: { blue: { color: 'blue' }, green: { color: 'green' } }, split: [{ subset: { version: 'v1' }, weight: 95 }, { subset: { version: 'v2' }, weight: 5 }], match: [{ header: 'X-Tester', value: '1', subset: 'green' }], mirror: { service: 'shadow', percent: 10 }, rateLimit: { limit: 5, window: '2s', key: 'header:X-Api-Key' } })],
    ['active/web', 'green'],
    ['policy/bad', '{"split": [{"subset": {"v": "1"}, "weight": 500}]}'],
    ['policy/notjson', '{'],
    ['policy/unknown', '{"splitt": []}'],
    ['active/orphan', 'blue'],
    ['other/key', 'x'],
  ]));
  const web = p.byService.get('web')!;
  t.is(web.active, 'green');
  t.deepEqual(web.split.map((s) => s.weight), [95, 5]);
  t.is(web.match[0]!.header, 'x-tester');
  t.deepEqual(web.match[0]!.subset, { color: 'green' });
  t.deepEqual(web.rateLimit, { limit: 5, windowMs: 2000, key: { kind: 'header', name: 'x-api-key' } });
  t.deepEqual(web.mirror, { service: 'shadow', percent: 10 });
  t.false(p.byService.has('bad'));
  t.is(p.errors.length, 4);
  t.true(p.errors.some((e) => e.includes('policy/bad') && e.includes('weight')));
  t.true(p.errors.some((e) => e.includes('policy/notjson') && e.includes('not JSON')));
  t.true(p.errors.some((e) => e.includes('policy/unknown') && e.includes('splitt')));
  t.true(p.errors.some((e) => e.includes('active/orphan')));
});

const inst = (name: string, tags: string[], meta: Record<string, string> = {}, o = outliers()) => ({ name, tags, meta, health: o.state(name) });

test('split by tag or Meta subset follows the weights; header and cookie matches win; blue/green takes all', (t) => {
  const o = outliers();
  const list = [inst('a', ['version=v1'], {}, o), inst('b', [], { version: 'v1' }, o), inst('c', ['version=v2'], {}, o)];
  const policy = parsePolicies(new Map([['policy/s', JSON.stringify({ split: [{ subset: { version: 'v1' }, weight: 90 }, { subset: { version: 'v2' }, weight: 10 }], match: [{ header: 'x-canary', value: 'yes', subset: { version: 'v2' } }, { cookie: 'lane', value: 'v2', subset: { version: 'v2' } }] })]])).byService.get('s');
  const sel = compileSelector(list, policy);
  let v2 = 0;
  for (let i = 0; i < 1000; i++) if (chooseSet(sel, {}, i / 1000).instances[0]!.name === 'c') v2++;
  t.is(v2, 100);
  t.is(chooseSet(sel, { 'x-canary': 'yes' }, 0).instances[0]!.name, 'c');
  t.is(chooseSet(sel, { cookie: 'a=1; lane=v2' }, 0).instances[0]!.name, 'c');
  t.deepEqual(chooseSet(sel, { cookie: 'lane=v1' }, 0).instances.map((i) => i.name), ['a', 'b']);
  const bg = parsePolicies(new Map([['policy/s', JSON.stringify({ subsets: { blue: { version: 'v1' }, green: { version: 'v2' } }, split: [{ subset: 'blue', weight: 50 }, { subset: 'green', weight: 50 }] })], ['active/s', 'green']])).byService.get('s');
  const sel2 = compileSelector(list, bg);
  for (let i = 0; i < 10; i++) t.is(chooseSet(sel2, {}, i / 10).instances[0]!.name, 'c');
});

test('an empty subset leaves the split (its share goes to the others)', (t) => {
  const list = [inst('a', ['version=v1'])];
  const policy = parsePolicies(new Map([['policy/s', JSON.stringify({ split: [{ subset: { version: 'v1' }, weight: 50 }, { subset: { version: 'v2' }, weight: 50 }] })]])).byService.get('s');
  const sel = compileSelector(list, policy);
  for (let i = 0; i < 10; i++) t.is(chooseSet(sel, {}, i / 10).instances[0]!.name, 'a');
});

test('outlier ejection after consecutive failures, half-open probe, longer ejection after a failed probe', (t) => {
  const o = outliers();
  const a = inst('a', [], {}, o);
  const b = inst('b', [], {}, o);
  const sel = compileSelector([a, b], undefined);
  t.false(o.failure(a.health, 0));
  t.false(o.failure(a.health, 0));
  t.true(o.failure(a.health, 0));
  for (let i = 0; i < 5; i++) t.is(pickInstance(sel.all, o, 500)!.name, 'b');
  // half-open after 1 s: one probe at a time
  const picks = [pickInstance(sel.all, o, 1001)!.name, pickInstance(sel.all, o, 1001)!.name, pickInstance(sel.all, o, 1001)!.name];
  t.is(picks.filter((p) => p === 'a').length, 1);
  t.true(o.failure(a.health, 1002)); // failed probe: ejected again, for 2 s
  t.is(a.health.ejectedUntil, 3002);
  t.is(pickInstance(sel.all, o, 3003)!.name === 'a' || pickInstance(sel.all, o, 3003)!.name === 'a', true);
  o.success(a.health);
  t.false(a.health.ejected);
  // every instance ejected: panic, the soonest back is used anyway
  for (let i = 0; i < 3; i++) { o.failure(a.health, 4000); o.failure(b.health, 4100); }
  t.truthy(pickInstance(sel.all, o, 4200));
});

test('retry rule: connect failures for any bodiless method, resets and timeouts for idempotent ones only', (t) => {
  t.true(retriable('POST', 'connect', false, false));
  t.false(retriable('POST', 'connect', true, false));
  t.false(retriable('POST', 'reset', false, false));
  t.true(retriable('GET', 'reset', false, false));
  t.true(retriable('PUT', 'header-timeout', false, false));
  t.false(retriable('GET', 'reset', false, true));
  t.false(retriable('GET', 'body', false, false));
});

test('retry budget: a ratio of recent requests plus a floor, then refused', (t) => {
  const b = new RetryBudget({ ratio: 0.1, minPerSecond: 0, windowMs: 10_000 });
  for (let i = 0; i < 100; i++) b.request(1000);
  let granted = 0;
  for (let i = 0; i < 50; i++) if (b.tryRetry(1000)) granted++;
  t.is(granted, 10);
  t.false(b.tryRetry(12_000)); // window slid: no requests, no floor
});

test('local window: limit per key per window, headers with Retry-After when refused', (t) => {
  const w = new LocalWindows();
  const out = [];
  for (let i = 0; i < 7; i++) out.push(w.decide('k', 5, 1000, 10_200).allowed);
  t.deepEqual(out, [true, true, true, true, true, false, false]);
  t.true(w.decide('other', 5, 1000, 10_200).allowed);
  t.true(w.decide('k', 5, 1000, 11_000).allowed);
  const h = rateLimitHeaders({ allowed: false, limit: 5, remaining: 0, resetMs: 800, backend: 'local' }, 1000);
  t.deepEqual(h, { 'ratelimit-limit': '5', 'ratelimit-remaining': '0', 'ratelimit-reset': '1', 'ratelimit-policy': '5;w=1', 'retry-after': '1' });
});
