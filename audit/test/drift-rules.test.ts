// The drift report's rules as a pure function (its inputs come from real
// engines in drift.test.ts): since when a service has had no passing instance.
import test from 'ava';
import { computeDrift } from '../src/drift.ts';
import type { ServiceRecord } from '../src/catalog.ts';
import type { AuditEntry } from '../src/entry.ts';

const rec = (service: string, id: string, health: ServiceRecord['health']): ServiceRecord => ({
  node: 'n1', nodeAddress: '10.0.0.1', agentNode: true, id, service, address: '10.0.0.2', port: 80, tags: [], meta: {},
  createIndex: 10, modifyIndex: 10, owner: undefined, health, checks: [],
});
let seq = 0;
const entry = (time: string, action: string, service: string, instance: string, status = ''): AuditEntry & { id: string } => ({
  id: `${++seq}-0`, time, owner: 'o', action, service, instance, source: 'docker', origin: '', originName: '', image: '', host: 'h', reason: 'event', ok: 'true', error: '', status,
});
const opts = { now: Date.parse('2026-01-01T02:00:00Z'), noPassingAfterMs: 30 * 60_000, flapPerHour: 100, hostTag: 'gantry.host' };

test('no passing instance: since the trail saw the last passing one go, not since the last entry about the service', (t) => {
  const entries = [
    entry('2026-01-01T00:00:00Z', 'register', 'web', 'w1', 'passing'),
    entry('2026-01-01T00:00:00Z', 'register', 'web', 'w2', 'passing'),
    entry('2026-01-01T00:30:00Z', 'status', 'web', 'w1', 'critical'),
    entry('2026-01-01T01:00:00Z', 'status', 'web', 'w2', 'critical'), // the last passing one goes here
    entry('2026-01-01T01:50:00Z', 'update', 'web', 'w2', 'critical'), // a later entry changes nothing
    entry('2026-01-01T00:00:00Z', 'register', 'api', 'a1', 'passing'),
    entry('2026-01-01T01:45:00Z', 'status', 'api', 'a1', 'critical'), // 15 min: under the threshold
    entry('2026-01-01T00:10:00Z', 'register', 'db', 'd1', ''), // no check: passing, as Consul counts it
  ];
  const d = computeDrift([rec('web', 'w1', 'critical'), rec('web', 'w2', 'critical'), rec('api', 'a1', 'critical'), rec('db', 'd1', 'critical'), rec('old', 'o1', 'critical')], new Map(), [], entries, opts);
  t.deepEqual(d.noPassing.map((s) => [s.service, s.since, s.forMs]).sort(), [
    // Consul says db is critical while the trail last saw it passing: the trail cannot say since when
    ['db', null, null],
    // nothing about it in the window: longer than the trail knows
    ['old', null, null],
    ['web', '2026-01-01T01:00:00Z', 60 * 60_000],
  ]);
});

test('no passing instance: a passing instance coming back resets the clock; a deregistration counts as gone', (t) => {
  const entries = [
    entry('2026-01-01T00:00:00Z', 'register', 'web', 'w1', 'critical'),
    entry('2026-01-01T00:20:00Z', 'status', 'web', 'w1', 'passing'),
    entry('2026-01-01T00:25:00Z', 'register', 'web', 'w2', 'passing'),
    entry('2026-01-01T00:40:00Z', 'status', 'web', 'w1', 'critical'),
    entry('2026-01-01T00:50:00Z', 'deregister', 'web', 'w2'),
  ];
  const d = computeDrift([rec('web', 'w1', 'critical')], new Map(), [], entries, opts);
  t.deepEqual(d.noPassing, [{ service: 'web', instances: 1, since: '2026-01-01T00:50:00Z', forMs: 70 * 60_000 }]);
  // within the threshold it is not reported yet
  const early = computeDrift([rec('web', 'w1', 'critical')], new Map(), [], entries, { ...opts, now: Date.parse('2026-01-01T01:10:00Z') });
  t.deepEqual(early.noPassing, []);
  t.true(early.clean);
});
