// Consul service-definition files (JSON and YAML) → instances: fields, checks,
// and every problem with file and line:column, a bad entry skipped, the others kept.
import test from 'ava';
import { asOwnerId } from '@gantry/core';
import { parseDefinitions } from '../src/sources/static/definitions.ts';

const owner = asOwnerId('static@h');

test('JSON: Consul\'s service and services forms, with tags, meta, weights and HTTP/TCP checks', (t) => {
  const r = parseDefinitions(JSON.stringify({
    services: [
      { name: 'billing', address: '10.3.0.5', port: 8080, tags: ['vm', 'v1'], meta: { team: 'pay' }, weights: { passing: 3, warning: 1 },
        checks: [{ http: 'http://10.3.0.5:8080/health', interval: '5s', timeout: '1s' }, { tcp: '10.3.0.5:8080', interval: '10s' }] },
      { Name: 'ledger', ID: 'ledger-1', Address: 'ledger.vm.example', Port: 9000 },
    ],
  }, null, 2), '/etc/gantry/vm.json', owner);
  if (!r.ok) { t.fail(r.problem.reason); return; }
  t.deepEqual(r.problems, []);
  const [billing, ledger] = r.instances;
  t.like(billing, { id: 'billing-10.3.0.5-8080', name: 'billing', address: '10.3.0.5', port: 8080, tags: ['vm', 'v1'], weights: { passing: 3, warning: 1 } });
  t.like(billing!.meta, { team: 'pay', 'gantry-owner': 'static@h', 'gantry-source': 'static', 'gantry-origin': '/etc/gantry/vm.json' });
  t.deepEqual(billing!.checks, [
    { kind: 'http', url: 'http://10.3.0.5:8080/health', interval: '5s', timeout: '1s' },
    { kind: 'tcp', address: '10.3.0.5:8080', interval: '10s' },
  ]);
  t.like(ledger, { id: 'ledger-1', name: 'ledger', address: 'ledger.vm.example', port: 9000 });
  const single = parseDefinitions('{"service": {"name": "one", "address": "10.0.0.1", "port": 1}}', 'f.json', owner);
  t.true(single.ok && single.instances.length === 1);
});

test('YAML, and an invalid entry reported with file, line and column while the rest applies', (t) => {
  const yaml = [
    'services:',
    '  - name: a',
    '    address: 10.0.0.1',
    '    port: 80',
    '  - name: b',
    '    address: 10.0.0.2',
    '    port: 99999',
    '  - name: c',
    '    address: "bad host\\n"',
    '    port: 81',
    '  - name: d',
    '    address: 10.0.0.4',
    '    port: 82',
    '    checks:',
    '      - script: rm -rf /',
    '  - name: e',
    '    address: 10.0.0.5',
    '    port: 83',
    '    meta: { gantry-owner: someone }',
  ].join('\n');
  const r = parseDefinitions(yaml, '/srv/vms.yaml', owner);
  if (!r.ok) { t.fail(r.problem.reason); return; }
  t.deepEqual(r.instances.map((i) => i.name), ['a']);
  t.deepEqual(r.problems.map((p) => `${p.file}:${p.line}:${p.col}`), ['/srv/vms.yaml:7:11', '/srv/vms.yaml:9:14', '/srv/vms.yaml:15:7', '/srv/vms.yaml:19:11']);
  t.regex(r.problems[0]!.reason, /entry 2, port: port "99999" is not a whole number/);
  t.regex(r.problems[1]!.reason, /entry 3, address: "bad host\\\\n" is not an IP address or host name/);
  t.regex(r.problems[2]!.reason, /only http and tcp checks/);
  t.regex(r.problems[3]!.reason, /Gantry's own/);
});

test('a file that does not parse, is empty, or has no service key is unreadable (the caller keeps what it said before)', (t) => {
  const half = parseDefinitions('{"services": [{"name": "a", "address": "10.0.0.1", "port": 80}, {"name": "b", "addr', '/x.json', owner);
  t.false(half.ok);
  if (!half.ok) t.like(half.problem, { file: '/x.json', line: 1 });
  t.false(parseDefinitions('', '/x.json', owner).ok);
  t.false(parseDefinitions('  \n', '/x.yaml', owner).ok);
  t.false(parseDefinitions('other: 1', '/x.yaml', owner).ok);
  t.false(parseDefinitions('services: 3', '/x.yaml', owner).ok);
  const dup = parseDefinitions('services:\n  - {name: a, address: 10.0.0.1, port: 1}\n  - {name: a, address: 10.0.0.1, port: 1}\n', '/d.yaml', owner);
  t.true(dup.ok && dup.instances.length === 1 && dup.problems.length === 1 && /used twice/.test(dup.problems[0]!.reason));
});

test('hostile values: names are escaped, control characters and {{ in meta refused, nothing throws', (t) => {
  const r = parseDefinitions(JSON.stringify({ services: [
    { name: 'Weird Name{{x}}', address: '10.0.0.1', port: 1 },
    { name: 'm', address: '10.0.0.2', port: 2, meta: { k: 'line\nbreak' } },
    { name: 'n', address: '10.0.0.3', port: 3, tags: ['a\nb'] },
    { name: '{{}}', address: '10.0.0.4', port: 4 },
    { name: 'big', address: '10.0.0.5', port: 5, meta: { k: 'x'.repeat(10_000) } },
  ] }), '/h.json', owner);
  if (!r.ok) { t.fail(r.problem.reason); return; }
  t.deepEqual(r.instances.map((i) => i.name), ['Weird-Name-x']);
  t.is(r.problems.length, 4);
  for (const p of r.problems) t.false(/[\n\r]/.test(p.reason));
});
