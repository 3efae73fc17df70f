import test from 'ava';
import fc from 'fast-check';
import {
  escapeDnsLabel, escapeDnsName, escapeConsulServiceName, escapeConsulId, escapeConsulMetaKey,
  escapeHAProxyIdentifier, escapeHAProxyValue, escapeHAProxyLogFormat, escapeLogField, checkConsulTag, checkConsulMetaValue,
} from '../src/escape.ts';
import { startHAProxy } from '../../test/harness/engines/haproxy.ts';
import { manageEngines } from '../../test/harness/ava.ts';

const track = manageEngines(test);

// Inputs as hostile as they come: every unicode code point, config-breaking
// punctuation, control characters, and very long strings.
const hostileChar = fc.oneof(
  fc.constantFrom('\n', '\r', '\t', ' ', '#', '"', "'", '\\', '$', '{', '}', '{{', '\u0000', '\u2028', '\u202e', '.', '-', '_', ':', ';', '|', '`', '%', 'é', 'Ω', '🚀'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);
const hostile = fc.oneof(
  fc.array(hostileChar, { maxLength: 80 }).map((a) => a.join('')),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.tuple(fc.string({ maxLength: 5 }), fc.nat({ max: 12_000 })).map(([s, n]) => (s || 'a').repeat(Math.ceil(n / Math.max(1, s.length)))),
);
const params = { numRuns: 2000 };

test('DNS label: any input gives a valid RFC 1123 label or a reason', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const r = escapeDnsLabel(input);
    if (!r.ok) return r.reason.length > 0;
    return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(r.value);
  }), params);
  t.pass();
});

test('DNS name: labels joined by dots, at most 253 characters', (t) => {
  fc.assert(fc.property(fc.array(hostile, { minLength: 1, maxLength: 4 }), (labels) => {
    const r = escapeDnsName(labels.join('.'));
    if (!r.ok) return r.reason.length > 0;
    return r.value.length <= 253 && r.value.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
  }), params);
  t.pass();
});

test('HAProxy identifier: only [A-Za-z0-9_.:-], at most 100, and distinct inputs stay distinct', (t) => {
  fc.assert(fc.property(hostile, hostile, (a, b) => {
    const ra = escapeHAProxyIdentifier(a);
    const rb = escapeHAProxyIdentifier(b);
    if (!ra.ok) return a === '' && ra.reason.length > 0;
    if (!/^[A-Za-z0-9_.:-]{1,100}$/.test(ra.value)) return false;
    return !(rb.ok && a !== b && ra.value === rb.value);
  }), params);
  t.pass();
});

test('HAProxy value: always one word on one line (bare safe chars, or a closed, escaped quote)', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const r = escapeHAProxyValue(input);
    if (!r.ok) return r.reason.length > 0;
    if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(r.value)) return false;
    // no '%' ever: in a log-format argument it could be a %[...] sample fetch or a %ci variable
    if (r.value.includes('%')) return false;
    if (!r.changed) return /^[A-Za-z0-9._~:/?&=@+,;!*()[\]-]+$/.test(r.value);
    // quoted: starts and ends with ", and every " ' $ # \ inside is escaped
    if (!r.value.startsWith('"') || !r.value.endsWith('"')) return false;
    const inner = r.value.slice(1, -1);
    return !/(^|[^\\])(\\\\)*["'$#]/.test(inner);
  }), params);
  t.pass();
});

test('HAProxy value: a newline can never add a line; an overlong value is refused with a reason', (t) => {
  const nl = escapeHAProxyValue('orders\n    server evil 10.0.0.1:80');
  t.false(nl.ok);
  t.regex(nl.ok ? '' : nl.reason, /control character/);
  const long = escapeHAProxyValue('a'.repeat(10_240));
  t.false(long.ok);
  t.regex(long.ok ? '' : long.reason, /longer than 1024/);
  const quoted = escapeHAProxyValue('a b#c"d');
  t.true(quoted.ok);
  t.is(quoted.ok ? quoted.value : '', '"a b\\#c\\"d"');
});

test('HAProxy value: %[...] is refused with a reason pointing at the log-format escaper', (t) => {
  const r = escapeHAProxyValue('/x%[req.hdr(cookie)]');
  t.false(r.ok);
  t.regex(r.ok ? '' : r.reason, /'%'.*log-format.*escapeHAProxyLogFormat/);
  t.false(escapeHAProxyValue('%ci').ok);
});

test('HAProxy log-format text: every % doubled, one word on one line', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const r = escapeHAProxyLogFormat(input);
    if (!r.ok) return r.reason.length > 0;
    if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(r.value)) return false;
    const inner = r.value.startsWith('"') ? r.value.slice(1, -1) : r.value;
    // every '%' is part of a '%%' pair: HAProxy writes one literal '%' and evaluates nothing
    if (/%/.test(inner.replaceAll('%%', ''))) return false;
    if (!r.value.startsWith('"')) return /^[A-Za-z0-9._~:/?&=@+,;!*()[\]%-]+$/.test(r.value);
    return r.value.endsWith('"') && !/(^|[^\\])(\\\\)*["'$#]/.test(inner);
  }), params);
  t.deepEqual(escapeHAProxyLogFormat('%[src]'), { ok: true, value: '%%[src]', changed: true });
  t.pass();
});

test('HAProxy log-format text: a real HAProxy answers each escaped text literally (nothing evaluated)', async (t) => {
  // generated hostile texts (no control characters: those are refused) go through lf-string of a
  // real HAProxy; the body must be the input, byte for byte: no %[...] fetched, no ${} expanded
  const printable = fc.array(fc.oneof(
    fc.constantFrom('%[src]', '%ci', '%{+Q}o', '%', '%%', '${HOME}', '$', '#', '"', "'", '\\', '\\x41', ' ', '{', '}', 'a', 'Z', '/', 'é'),
    fc.string({ minLength: 1, maxLength: 3 }).filter((s) => !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(s)),
  ), { minLength: 1, maxLength: 12 }).map((a) => a.join(''));
  const inputs = [...new Set(['%[src]', 'a %[req.hdr(host)] b', '${HOME}%ci', ...fc.sample(printable, { numRuns: 40, seed: 42 })])];
  const h = await startHAProxy({
    config: (p) => `global
    stats socket ${p.dir}/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend f
    bind 127.0.0.1:${p.httpPort}
${inputs.map((input, i) => {
  const r = escapeHAProxyLogFormat(input);
  if (!r.ok) throw new Error(`refused ${JSON.stringify(input)}: ${r.reason}`);
  return `    http-request return status 200 content-type text/plain lf-string ${r.value} if { path /${i} }`;
}).join('\n')}
`,
  });
  track('haproxy', h);
  for (const [i, input] of inputs.entries()) {
    const res = await fetch(`http://127.0.0.1:${h.httpPort}/${i}`);
    t.is(Buffer.from(await res.arrayBuffer()).toString('utf8'), input, `input ${i}: ${JSON.stringify(input)}`);
  }
});

test('Consul service name and ID: safe characters only, bounded, reasons for the unusable', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const n = escapeConsulServiceName(input);
    const id = escapeConsulId(input);
    const nameOk = n.ok ? /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(n.value) : n.reason.length > 0;
    const idOk = id.ok ? /^[A-Za-z0-9_.:-]{1,128}$/.test(id.value) : id.reason.length > 0;
    return nameOk && idOk;
  }), params);
  const empty = escapeConsulServiceName('###');
  t.false(empty.ok);
  t.regex(empty.ok ? '' : empty.reason, /no letter or digit/);
  t.deepEqual(escapeConsulId('host:abc123:80'), { ok: true, value: 'host:abc123:80', changed: false });
});

test('Consul meta keys, meta values and tags', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const k = escapeConsulMetaKey(input);
    if (k.ok && !/^[A-Za-z0-9_-]{1,128}$/.test(k.value)) return false;
    const v = checkConsulMetaValue(input);
    if (v.ok && (v.value.length > 512 || /[\u0000-\u001f]/.test(v.value))) return false;
    const tag = checkConsulTag(input);
    return !(tag.ok && (tag.value.length > 255 || /[\n\r\u0000]/.test(tag.value)));
  }), params);
  const reserved = escapeConsulMetaKey('consul-version');
  t.false(reserved.ok);
  const tenK = checkConsulTag('x'.repeat(10_240));
  t.regex(tenK.ok ? '' : tenK.reason, /longer than 255/);
  const nl = checkConsulTag('a\nb');
  t.regex(nl.ok ? '' : nl.reason, /control character/);
});

test('log field: no raw control character, bounded length', (t) => {
  fc.assert(fc.property(hostile, (input) => {
    const s = escapeLogField(input, 256);
    return !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(s) && s.length <= 256 * 6 + 40;
  }), params);
  t.is(escapeLogField('a\nb'), 'a\\nb');
});

test('names users expect stay readable', (t) => {
  const label = escapeDnsLabel('My_Orders.Service');
  t.deepEqual(label, { ok: true, value: 'my-orders-service', changed: true });
  t.deepEqual(escapeDnsLabel('orders'), { ok: true, value: 'orders', changed: false });
  t.deepEqual(escapeConsulServiceName('redis_cache'), { ok: true, value: 'redis-cache', changed: true });
  const id = escapeHAProxyIdentifier('orders v2');
  t.true(id.ok && /^orders_v2_[0-9a-f]{8}$/.test(id.value));
});
