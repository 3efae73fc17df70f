// The parts without I/O: which keys are documents, how YAML/JSON/properties
// become keys, the view's keys()/tree(), the typed conversions, the token bucket.
import test from 'ava';
import { documentFormat, documentParent, parseConfigDocument } from '../src/documents.ts';
import { parseProperties } from '../src/properties.ts';
import { View } from '../src/view.ts';
import { asBoolean, asNumber, asString } from '../src/convert.ts';
import { Layer, diffViews } from '../src/layers.ts';
import { TokenBucket } from '@gantry/core';
import { normalizeOptions, normalizePrefix } from '../src/options.ts';
import type { ConfigValue } from '../src/types.ts';

function parsed(format: 'yaml' | 'json' | 'properties', text: string): Record<string, ConfigValue> {
  const r = parseConfigDocument(format, text);
  if (!r.ok) throw new Error(`expected ${format} to parse: ${r.message}`);
  return Object.fromEntries(r.values);
}

test('document keys are recognised by extension, or by the prefix format', (t) => {
  t.is(documentFormat('app.yaml', 'auto'), 'yaml');
  t.is(documentFormat('dir/app.YML', 'auto'), 'yaml');
  t.is(documentFormat('x.json', 'auto'), 'json');
  t.is(documentFormat('a/b.properties', 'auto'), 'properties');
  t.is(documentFormat('yaml', 'auto'), undefined);
  t.is(documentFormat('app.yaml.bak', 'auto'), undefined);
  t.is(documentFormat('app.yaml', 'plain'), undefined);
  t.is(documentFormat('data', 'yaml'), 'yaml');
  t.is(documentFormat('data.json', 'properties'), 'properties');
  t.is(documentParent('app.yaml'), '');
  t.is(documentParent('services/pay/app.yaml'), 'services/pay/');
});

test('YAML: nested mappings become /-joined keys, typed leaves, lists as one value', (t) => {
  t.deepEqual(parsed('yaml', 'db:\n  url: postgres://x\n  pool: { max: 5, lazy: true }\nhosts: [a, b]\nempty:\nn: 1.5\n'), {
    'db/url': 'postgres://x', 'db/pool/max': 5, 'db/pool/lazy': true, hosts: ['a', 'b'], empty: null, n: 1.5,
  });
  t.deepEqual(parsed('yaml', ''), {});
  t.deepEqual(parsed('yaml', '# only a comment\n'), {});
  const hosts = parsed('yaml', 'hosts: [a]\n').hosts as string[];
  t.true(Object.isFrozen(hosts), 'a list shared by every reader is frozen');
});

test('YAML and JSON errors carry the parser message; a top-level list or scalar is refused', (t) => {
  const bad = parseConfigDocument('yaml', 'a: [1, 2\nb: c\n');
  t.false(bad.ok);
  if (!bad.ok) t.regex(bad.message, /flow sequence|line|\]/i);
  const dup = parseConfigDocument('yaml', 'a: 1\na: 2\n');
  t.false(dup.ok, 'duplicate keys are an error, not a silent last-wins');
  const json = parseConfigDocument('json', '{"a": 1,}');
  t.false(json.ok);
  if (!json.ok) t.regex(json.message, /JSON|Expected|Unexpected/);
  const list = parseConfigDocument('yaml', '- a\n- b\n');
  t.deepEqual(list, { ok: false, message: 'expected a mapping at the top level, got a list' });
  const scalar = parseConfigDocument('json', '42');
  t.deepEqual(scalar, { ok: false, message: 'expected a mapping at the top level, got a number' });
});

test('YAML aliases are capped (no billion laughs)', (t) => {
  const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i++) lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`);
  const r = parseConfigDocument('yaml', lines.join('\n'));
  t.false(r.ok);
});

test('JSON documents: nested objects flattened, "__proto__" is a plain key', (t) => {
  const values = parsed('json', '{"server": {"port": 8080, "tls": false}, "__proto__": {"polluted": "yes"}, "list": [{"a": 1}]}');
  t.is(values['server/port'], 8080);
  t.is(values['server/tls'], false);
  t.is(values['__proto__/polluted'], 'yes');
  t.deepEqual(values.list, [{ a: 1 }]);
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('properties: separators, comments, continuations, escapes; dots are levels', (t) => {
  const text = [
    '# comment', '! also a comment', '', 'db.url = jdbc:x',
    'db.user:admin', 'plain value with spaces', 'multi = one \\', '    two', 'esc = tab\\tnl\\n\\u00e9',
    'key\\ with\\ space = v', 'empty=', 'dup=1', 'dup=2',
  ].join('\n');
  const map = parseProperties(text);
  t.is(map.get('db.url'), 'jdbc:x');
  t.is(map.get('db.user'), 'admin');
  t.is(map.get('plain'), 'value with spaces');
  t.is(map.get('multi'), 'one two');
  t.is(map.get('esc'), 'tab\tnl\né');
  t.is(map.get('key with space'), 'v');
  t.is(map.get('empty'), '');
  t.is(map.get('dup'), '2');
  t.false(map.has('# comment'));
  t.deepEqual(parsed('properties', 'a.b.c=1\nx=2\n'), { 'a/b/c': '1', x: '2' });
  const bad = parseConfigDocument('properties', 'a=\\uZZZZ\n');
  t.deepEqual(bad, { ok: false, message: 'line 1: malformed \\uXXXX escape "\\\\uZZZZ"' });
});

test('view: keys(prefix) in order, tree() nested, a key that is also a parent stays out of the tree', (t) => {
  const view = new View(new Map<string, ConfigValue>([
    ['db/url', 'u'], ['db/pool/max', 5], ['db', 'also-a-value'], ['dba', 'x'], ['z', 'last'], ['__proto__', 'p'], ['a b/ü', 'unicode'],
  ]));
  t.deepEqual(view.keys(), ['__proto__', 'a b/ü', 'db', 'db/pool/max', 'db/url', 'dba', 'z']);
  t.deepEqual(view.keys('db'), ['db', 'db/pool/max', 'db/url', 'dba']);
  t.deepEqual(view.keys('db/'), ['db/pool/max', 'db/url']);
  t.deepEqual(view.keys('nothing'), []);
  t.deepEqual(view.tree('db'), { url: 'u', pool: { max: 5 } });
  t.deepEqual(view.tree('db/pool/'), { max: 5 });
  const all = view.tree();
  t.deepEqual(Object.keys(all).sort(), ['__proto__', 'a b', 'db', 'dba', 'z']);
  t.is(Object.getPrototypeOf(all), Object.prototype, 'a "__proto__" key never becomes a prototype');
  t.deepEqual(all.db, { url: 'u', pool: { max: 5 } });
  t.deepEqual(all['a b'], { ü: 'unicode' });
});

test('typed conversions: text converts, anything else gives undefined', (t) => {
  t.is(asNumber(' 42 '), 42);
  t.is(asNumber('4.5e3'), 4500);
  t.is(asNumber(''), undefined);
  t.is(asNumber('12abc'), undefined);
  t.is(asNumber(7), 7);
  t.is(asNumber(true), undefined);
  t.is(asBoolean('TRUE'), true);
  t.is(asBoolean('off'), false);
  t.is(asBoolean('maybe'), undefined);
  t.is(asBoolean(0), false);
  t.is(asString(3), '3');
  t.is(asString(['a']), undefined);
  t.is(asString(null), undefined);
});

test('layer: a later document wins over an earlier one, a plain key over both; an invalid document keeps its last good values', (t) => {
  const layer = new Layer('p/', 'auto');
  let r = layer.apply([
    { key: 'p/a.yaml', value: 'x: 1\ny: 1\n' },
    { key: 'p/b.yaml', value: 'y: 2\n' },
    { key: 'p/x', value: 'plain' },
    { key: 'p/', value: '' },
    { key: 'p/folder/', value: '' },
  ], 'consul');
  t.true(r.rawChanged);
  t.deepEqual(Object.fromEntries(layer.values), { x: 'plain', y: 2 });
  r = layer.apply([
    { key: 'p/a.yaml', value: 'x: 1\ny: 1\n' },
    { key: 'p/b.yaml', value: 'y: [\n' },
    { key: 'p/x', value: 'plain' },
  ], 'consul');
  t.true(r.rawChanged);
  t.is(r.invalid.length, 1);
  t.is(r.invalid[0]!.key, 'p/b.yaml');
  t.deepEqual(Object.fromEntries(layer.values), { x: 'plain', y: 2 }, 'b.yaml keeps y: 2');
  r = layer.apply([
    { key: 'p/a.yaml', value: 'x: 1\ny: 1\n' },
    { key: 'p/b.yaml', value: 'y: [\n' },
    { key: 'p/x', value: 'plain' },
  ], 'consul');
  t.false(r.rawChanged);
  t.is(r.invalid.length, 0, 'the same invalid value is reported once, not on every answer');
});

test('diff: added, modified, deleted; equal lists are not a change', (t) => {
  const before = new Map<string, ConfigValue>([['a', '1'], ['b', ['x']], ['c', '3']]);
  const after = new Map<string, ConfigValue>([['a', '2'], ['b', ['x']], ['d', '4']]);
  t.deepEqual(diffViews(before, after), [
    { key: 'a', oldValue: '1', newValue: '2', type: 'modified' },
    { key: 'c', oldValue: '3', newValue: undefined, type: 'deleted' },
    { key: 'd', oldValue: undefined, newValue: '4', type: 'added' },
  ]);
});

test('token bucket: a burst passes at once, then the rate holds; a quiet period refills it', (t) => {
  let now = 0;
  const bucket = new TokenBucket(10, 3, () => now);
  const takeNow = (): boolean => {
    if (bucket.delay() > 0) return false;
    void bucket.take(new AbortController().signal);
    return true;
  };
  t.true(takeNow());
  t.true(takeNow());
  t.true(takeNow());
  t.false(takeNow(), 'the burst is spent');
  t.is(bucket.delay(), 100, 'one token every 100 ms at 10/s');
  now += 100;
  t.true(takeNow());
  now += 60_000;
  t.true(takeNow(), 'after a quiet period the first read is not held back');
  t.true(takeNow());
  t.true(takeNow());
  t.false(takeNow(), 'the bucket never holds more than the burst');
});

test('options: prefixes become folders; bad options are E_CONFIG naming the option', (t) => {
  t.is(normalizePrefix('config/app'), 'config/app/');
  t.is(normalizePrefix('/config/app/'), 'config/app/');
  t.is(normalizePrefix(''), '');
  t.throws(() => normalizePrefix('config/../x'), { code: 'E_CONFIG', message: /"\.\."/ });
  t.throws(() => normalizeOptions({ prefixes: [] }), { code: 'E_CONFIG', message: /prefixes/ });
  t.throws(() => normalizeOptions({ prefixes: ['a', 'a/'] }), { code: 'E_CONFIG', message: /twice/ });
  t.throws(() => normalizeOptions({ prefixes: ['a'], wait: '11m' }), { code: 'E_CONFIG', message: /wait/ });
  t.throws(() => normalizeOptions({ prefixes: ['a'], wait: 'soon' }), { code: 'E_CONFIG', message: /wait/ });
  t.throws(() => normalizeOptions({ prefixes: [{ prefix: 'a', format: 'toml' as 'yaml' }] }), { code: 'E_CONFIG', message: /format "toml"/ });
  const s = normalizeOptions({ prefixes: ['a'] });
  t.is(s.waitMs, 300_000);
  t.is(s.startTimeoutMs, 10_000);
  t.true(s.failFast);
});
