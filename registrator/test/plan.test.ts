// plan(): the difference between what a source wants and what Consul holds.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { asInstanceId, asServiceName, specHash, META, type ServiceInstance } from '@gantry/core';
import { plan, Reconciler, type Applied } from '../src/reconciler.ts';
import { createLogger } from '@gantry/core';
import { repoRoot } from '../../test/harness/bins.ts';

const inst = (id: string, extra: Partial<ServiceInstance> = {}): ServiceInstance => ({
  id: asInstanceId(id), name: asServiceName('web'), address: '10.0.0.1', port: 80, tags: ['a'], meta: { [META.owner]: 'o' }, checks: [],
  origin: { source: 'docker', ref: id }, ...extra,
});
/** as a sink reads it back: the spec hash in Meta, checks not read back */
const stored = (i: ServiceInstance): ServiceInstance => ({ ...i, checks: [], meta: { ...i.meta, [META.spec]: specHash(i) } });

test('nothing to do when Consul holds what is wanted (checks compared through the spec hash)', (t) => {
  const want = [inst('a', { checks: [{ kind: 'tcp', address: '10.0.0.1:80', interval: '10s' }] }), inst('b')];
  t.deepEqual(plan(want, want.map(stored)), []);
});

test('register the new, update the changed, deregister the gone', (t) => {
  const p = plan([inst('a'), inst('b', { port: 81 }), inst('c')], [stored(inst('b')), stored(inst('d'))]);
  t.deepEqual(p.map((e) => `${e.action}:${e.instance.id}`).sort(), ['deregister:d', 'register:a', 'register:c', 'update:b']);
  t.is(p.find((e) => e.action === 'update')?.previous?.port, 80);
});

test('a status or maintenance change alone is a status update, not a re-registration', (t) => {
  t.deepEqual(plan([inst('a', { status: 'critical' })], [stored(inst('a', { status: 'passing' }))]).map((e) => e.action), ['status']);
  t.deepEqual(plan([inst('a', { maintenance: true })], [stored(inst('a'))]).map((e) => e.action), ['status']);
  t.deepEqual(plan([inst('a', { tags: ['b'], status: 'critical' })], [stored(inst('a', { status: 'passing' }))]).map((e) => e.action), ['update']);
});

// The reconciler's own bookkeeping, on in-memory source and sink (the engines
// are in docker.test.ts): which reason a change is recorded with.
test('a change a full pass applies for a container an event named is recorded as an event; others as resync/orphan', async (t) => {
  const held = new Map<string, ServiceInstance>([['old', stored(inst('old'))]]);
  const applied: Applied[] = [];
  const r = new Reconciler({
    owner: 'o' as never, log: createLogger({ component: 'test', level: 'silent' }),
    source: { kind: 'docker', snapshot: () => Promise.resolve([inst('evt'), inst('quiet')]), changes: async function* () { /* none */ }, namedByEvent: (i) => i.origin.ref === 'evt' },
    sink: {
      owned: () => Promise.resolve([...held.values()]),
      register: (i) => { held.set(i.id, stored(i)); return Promise.resolve(); },
      deregister: (i) => { held.delete(i.id); return Promise.resolve(); },
    },
    onApplied: (a) => applied.push(a),
  });
  await r.pass('resync', true);
  t.deepEqual(applied.map((a) => `${a.action}:${a.instance.id}:${a.reason}`).sort(), ['deregister:old:orphan', 'register:evt:event', 'register:quiet:resync']);
  t.deepEqual([...held.keys()].sort(), ['evt', 'quiet']);
});

test('gantry registrator: a bad flag value exits 2 naming it', (t) => {
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [join(repoRoot, 'cli/bin/gantry.js'), 'registrator', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  for (const [args, env, re] of [
    [['--resync', 'soon'], {}, /flag --resync: invalid value "soon"/],
    [['--deregister', 'sometimes'], {}, /expected one of always, on-success/],
    [['--audit-redis', 'http://x'], {}, /scheme must be one of redis, rediss/],
    [[], { GANTRY_RESYNC: 'x' }, /environment variable GANTRY_RESYNC/],
    [['--no-docker'], {}, /nothing to do/],
  ] as Array<[string[], NodeJS.ProcessEnv, RegExp]>) {
    const r = run(args, env);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, re);
  }
});
