// Dubbo registry URLs: parse and format (the same module both ways), node-name
// encoding as Java's URLEncoder does it, and the provider → Consul instance rules,
// with hostile names that must neither reach a record unescaped nor throw.
import test from 'ava';
import fc from 'fast-check';
import { asOwnerId, escapeHAProxyValue, checkConsulMetaValue, checkConsulTag, escapeDnsLabel } from '@gantry/core';
import { parseProviderNode, parseDubboUrl, formatDubboUrl, formatProviderNode, encodeNodeName, decodeNodeName, interfaceOf, MAX_NODE_NAME, type DubboUrl } from '../src/sources/zookeeper/dubbo-url.ts';
import { providerToInstance, parseNameRule, ORIGIN_PARAM, type ProviderContext } from '../src/sources/zookeeper/mapping.ts';

// A node name exactly as Dubbo 2.7.8's ZookeeperRegistry wrote it (URL.encode of toFullString)
const DUBBO_27 = 'dubbo%3A%2F%2F192.168.1.7%3A20880%2Fcom.acme.OrderService%3Fanyhost%3Dtrue%26application%3Dorders%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3Dcom.acme.OrderService%26methods%3Dplace%2Ccancel%26pid%3D4242%26release%3D2.7.8%26side%3Dprovider%26timestamp%3D1600000000000%26version%3D1.0.0%26weight%3D50';
// Dubbo 2.6 (no release, `dubbo` holds the framework version, revision given)
const DUBBO_26 = 'dubbo%3A%2F%2F10.0.0.9%3A20881%2Fcom.acme.StockService%3Fanyhost%3Dtrue%26application%3Dstock%26dubbo%3D2.6.2%26generic%3Dfalse%26group%3Dwh1%26interface%3Dcom.acme.StockService%26methods%3Dget%26pid%3D77%26revision%3D1.2.0%26side%3Dprovider%26timestamp%3D1500000000000';

const ctx = (extra: Partial<ProviderContext> = {}): ProviderContext => ({ owner: asOwnerId('zookeeper@zk1'), path: '/dubbo/x/providers', nameRule: 'interface', ...extra });
const url = (name: string): DubboUrl => {
  const r = parseProviderNode(name);
  if (!r.ok) throw new Error(r.reason);
  return r.url;
};

test('Dubbo 2.7 and 2.6 provider node names parse to host, port, interface and parameters', (t) => {
  const u = url(DUBBO_27);
  t.like(u, { protocol: 'dubbo', host: '192.168.1.7', port: 20880, path: 'com.acme.OrderService' });
  t.is(u.params.get('methods'), 'place,cancel');
  t.is(u.params.get('release'), '2.7.8');
  t.is(interfaceOf(u), 'com.acme.OrderService');
  const v = url(DUBBO_26);
  t.like(v, { host: '10.0.0.9', port: 20881 });
  t.is(v.params.get('group'), 'wh1');
  t.is(v.params.get('revision'), '1.2.0');
});

test('every protocol: dubbo, tri, rest (with a context path), hessian, http, grpc', (t) => {
  for (const p of ['dubbo', 'tri', 'hessian', 'http', 'grpc']) {
    const u = url(encodeNodeName(`${p}://10.1.2.3:8080/com.acme.A?interface=com.acme.A&side=provider`));
    t.is(u.protocol, p);
    t.is(interfaceOf(u), 'com.acme.A');
  }
  const rest = url(encodeNodeName('rest://10.1.2.3:8080/api/v1/com.acme.B?side=provider'));
  t.is(rest.path, 'api/v1/com.acme.B');
  t.is(interfaceOf(rest), 'com.acme.B', 'no interface parameter: the last path segment');
});

test('format writes what parse reads, parameters sorted as Dubbo writes them, and the node name as Java URLEncoder encodes it', (t) => {
  const u = url(DUBBO_27);
  t.is(formatProviderNode(u), DUBBO_27, 'Dubbo 2.7 writes sorted parameters: the same bytes come back');
  t.is(encodeNodeName('a b+c/é*~'), 'a+b%2Bc%2F%C3%A9*%7E');
  t.deepEqual(decodeNodeName('a+b%2Bc%2F%C3%A9*%7E'), { ok: true, value: 'a b+c/é*~' });
  const v6: DubboUrl = { protocol: 'tri', host: 'fd00::1', port: 50051, path: 'com.acme.C', params: new Map([['side', 'provider'], ['interface', 'com.acme.C']]) };
  t.is(formatDubboUrl(v6), 'tri://[fd00::1]:50051/com.acme.C?interface=com.acme.C&side=provider');
  t.deepEqual(url(formatProviderNode(v6)), { ...v6, params: new Map([['interface', 'com.acme.C'], ['side', 'provider']]) }, 'read back in the order written');
  t.throws(() => formatDubboUrl({ ...v6, port: 0 }), { message: /port 0/ });
  t.throws(() => formatDubboUrl({ ...v6, host: 'a\nb' }), { message: /not an IP address or host name/ });
  t.throws(() => formatDubboUrl({ ...v6, params: new Map([['a&b', 'c']]) }), { message: /round trip/ });
});

test('round trip: any URL format accepts is parsed back to itself (property)', (t) => {
  const key = fc.stringMatching(/^[a-z][a-z0-9.]{0,10}$/);
  const value = fc.string({ maxLength: 20 }).filter((s) => !s.includes('&'));
  fc.assert(fc.property(
    fc.constantFrom('dubbo', 'tri', 'rest'), fc.constantFrom('10.0.0.1', 'fd00::2', 'svc-1.example.org'), fc.integer({ min: 1, max: 65535 }),
    fc.dictionary(key, value, { maxKeys: 6 }),
    (protocol, host, port, dict) => {
      const u: DubboUrl = { protocol, host, port, path: 'com.acme.D', params: new Map(Object.entries(dict).sort(([a], [b]) => (a < b ? -1 : 1))) };
      const back = parseProviderNode(formatProviderNode(u));
      return back.ok && back.url.host === host && back.url.port === port && JSON.stringify([...back.url.params]) === JSON.stringify([...u.params]);
    },
  ));
  t.pass();
});

test('IPv6 addresses: bracketed, registered without brackets; unbracketed or bad ones refused', (t) => {
  const u = url(encodeNodeName('dubbo://[2001:db8::7]:20880/com.acme.A?side=provider'));
  t.is(u.host, '2001:db8::7');
  const inst = providerToInstance(u, ctx());
  t.is(inst.kind, 'instance');
  if (inst.kind === 'instance') t.is(inst.instance.address, '2001:db8::7');
  for (const [bad, why] of [
    ['dubbo://2001:db8::7:20880/com.acme.A', /must be in brackets/],
    ['dubbo://[2001:db8::zz]:20880/com.acme.A', /not an IPv6 address/],
    ['dubbo://[2001:db8::7/com.acme.A', /without '\]'/],
    ['dubbo://[::1]20880/com.acme.A', /no port/],
  ] as const) {
    const r = parseProviderNode(encodeNodeName(bad));
    t.false(r.ok, bad);
    if (!r.ok) t.regex(r.reason, why);
  }
});

test('bad node names are refused with a reason naming what: percent-encoding, length, host, port, protocol', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['dubbo%3A%2F%2F10.0.0.1%3A2088%ZZ', /bad percent-encoding at character 29 \("%ZZ"\)/],
    ['dubbo%3A%2F%2F10.0.0.1%3A20880%2', /bad percent-encoding at character 30/],
    ['%C3%28', /not valid UTF-8/],
    ['x'.repeat(MAX_NODE_NAME + 1), /longer than 16384/],
    [encodeNodeName('dubbo://10.0.0.1/com.acme.A'), /no port/],
    [encodeNodeName('dubbo://10.0.0.1:0/com.acme.A'), /out of range/],
    [encodeNodeName('dubbo://10.0.0.1:99999/com.acme.A'), /out of range/],
    [encodeNodeName('dubbo://10.0.0.1:80a/com.acme.A'), /not a number/],
    [encodeNodeName('dubbo://10.0.0.1\n:80/com.acme.A'), /not an IP address or host name/],
    [encodeNodeName('dubbo://999.1.1.1:80/com.acme.A'), /not an IP address or host name/],
    [encodeNodeName('d{{u}}bbo://10.0.0.1:80/x'), /protocol .* is not valid/],
    [encodeNodeName('just text'), /not a protocol:\/\/host:port\/path URL/],
    [encodeNodeName('dubbo://10.0.0.1:80/a\nb'), /control character/],
  ];
  for (const [name, why] of cases) {
    const r = parseProviderNode(name);
    t.false(r.ok, name.slice(0, 60));
    if (!r.ok) {
      t.regex(r.reason, why);
      t.false(/[\n\r]/.test(r.reason), 'a reason is one line');
      t.true(r.reason.length < 300, 'a reason is short even for a 16 KB name');
    }
  }
});

test('user info (user:password@) is dropped, never kept', (t) => {
  const u = url(encodeNodeName('dubbo://admin:s3cret@10.0.0.1:20880/com.acme.A?side=provider'));
  t.is(u.host, '10.0.0.1');
  t.false(JSON.stringify([u, ...u.params]).includes('s3cret'));
});

test('provider → instance: name by interface (DNS-safe), tags, Meta, weights, origin', (t) => {
  const r = providerToInstance(url(DUBBO_27), ctx({ path: '/dubbo/com.acme.OrderService/providers' }));
  if (r.kind !== 'instance') { t.fail(JSON.stringify(r)); return; }
  const i = r.instance;
  t.is(String(i.name), 'com-acme-orderservice');
  t.like(i, { address: '192.168.1.7', port: 20880, weights: { passing: 50, warning: 1 } });
  t.deepEqual(i.tags, ['dubbo', 'dubbo-dubbo', 'version=1.0.0']);
  t.like(i.meta, {
    'gantry-owner': 'zookeeper@zk1', 'gantry-source': 'zookeeper', 'gantry-origin': '/dubbo/com.acme.OrderService/providers#192.168.1.7:20880',
    'dubbo-interface': 'com.acme.OrderService', 'dubbo-version': '1.0.0', 'dubbo-application': 'orders', 'dubbo-protocol': 'dubbo',
    'dubbo-release': '2.7.8', 'dubbo-methods': 'place,cancel', 'dubbo-side': 'provider',
  });
  t.like(i.origin, { source: 'zookeeper', ref: '/dubbo/com.acme.OrderService/providers#192.168.1.7:20880' });
  const old = providerToInstance(url(DUBBO_26), ctx());
  if (old.kind !== 'instance') { t.fail(); return; }
  t.like(old.instance.meta, { 'dubbo-release': '2.6.2', 'dubbo-group': 'wh1', 'dubbo-revision': '1.2.0' });
  t.true(old.instance.tags.includes('group=wh1'));
  t.is(old.instance.weights, undefined, 'no weight parameter: Consul\'s default weights');
  t.not(old.instance.id, i.id);
});

test('name rules: application, template; a rule with nothing to name by is an error', (t) => {
  const u = url(DUBBO_27);
  const app = providerToInstance(u, ctx({ nameRule: parseNameRule('application') }));
  t.is(app.kind === 'instance' ? String(app.instance.name) : app.reason, 'orders');
  const tpl = providerToInstance(u, ctx({ nameRule: parseNameRule('{application}-{interface}-{version}') }));
  t.is(tpl.kind === 'instance' ? String(tpl.instance.name) : tpl.reason, 'orders-com-acme-orderservice-1-0-0');
  const noApp = providerToInstance(url(encodeNodeName('dubbo://10.0.0.1:1/com.acme.A')), ctx({ nameRule: 'application' }));
  t.like(noApp, { kind: 'error', reason: 'no application parameter to name the service by' });
});

test('not imported: consumers, routers, configurators, other categories, disabled providers, nodes Gantry wrote', (t) => {
  const skip = (text: string): string => {
    const r = providerToInstance(url(encodeNodeName(text)), ctx());
    return r.kind === 'skip' ? r.reason : `not skipped: ${r.kind}`;
  };
  t.regex(skip('consumer://10.0.0.1:0/com.acme.A?category=consumers'.replace(':0', ':1')), /not a provider/);
  t.regex(skip('route://0.0.0.0:1/com.acme.A?category=routers'), /not a provider/);
  t.regex(skip('override://0.0.0.0:1/com.acme.A?category=configurators'), /not a provider/);
  t.regex(skip('dubbo://10.0.0.1:1/com.acme.A?category=configurators'), /category "configurators"/);
  t.regex(skip('dubbo://10.0.0.1:1/com.acme.A?enabled=false'), /disabled/);
  t.regex(skip('dubbo://10.0.0.1:1/com.acme.A?disabled=true'), /disabled/);
  t.regex(skip(`dubbo://10.0.0.1:1/com.acme.A?${ORIGIN_PARAM}=someone`), /loop guard/);
});

test('hostile names: newlines, {{, 10 KB values, odd keys — an error or a record whose every field passes core\'s checks, never a throw', (t) => {
  const hostile = [
    'dubbo://10.0.0.1:1/com.acme.A?application={{range services}}x{{end}}',
    'dubbo://10.0.0.1:1/com.acme.A?application=a\nfrontend evil',
    'dubbo://10.0.0.1:1/com.acme.A?version=1\r\n2',
    `dubbo://10.0.0.1:1/com.acme.A?methods=${'mmmm,'.repeat(2000)}`,
    `dubbo://10.0.0.1:1/com.acme.A?application=${'a'.repeat(10_000)}`,
    'dubbo://10.0.0.1:1/{{x}}',
    'dubbo://10.0.0.1:1/com.acme.A?interface=com.acme.A%0Abackend',
    'dubbo://10.0.0.1:1/com.acme.A?__proto__=x&constructor=y&weight=-1',
    'dubbo://10.0.0.1:1/com.acme.A?weight=99999999',
  ];
  const kinds: string[] = [];
  for (const text of hostile) {
    for (const rule of ['interface', 'application', '{application}-{version}'] as const) {
      const parsed = parseDubboUrl(text);
      if (!parsed.ok) { kinds.push('parse-error'); continue; }
      const r = providerToInstance(parsed.url, ctx({ nameRule: parseNameRule(rule) }));
      kinds.push(r.kind);
      if (r.kind !== 'instance') { t.false(/[\n\r]/.test(r.reason)); continue; }
      const i = r.instance;
      const label = escapeDnsLabel(String(i.name));
      t.true(label.ok && label.value === String(i.name), `name ${JSON.stringify(i.name)} is a DNS label`);
      t.true(escapeHAProxyValue(i.address).ok);
      for (const v of Object.values(i.meta)) t.true(checkConsulMetaValue(v).ok, JSON.stringify(v).slice(0, 80));
      for (const tag of i.tags) t.true(checkConsulTag(tag).ok);
      t.false(String(i.name).includes('{'));
    }
  }
  t.true(kinds.includes('instance') && kinds.includes('error'), kinds.join(','));
  const huge = providerToInstance(url(encodeNodeName(`dubbo://10.0.0.1:1/com.acme.A?methods=${'mmmm,'.repeat(2000)}`)), ctx());
  if (huge.kind === 'instance') t.true(huge.instance.meta['dubbo-methods']!.endsWith(',...'), 'a long methods list is cut, marked');
  else t.fail(huge.reason);
  const w = providerToInstance(url(encodeNodeName('dubbo://10.0.0.1:1/com.acme.A?weight=99999999')), ctx());
  t.deepEqual(w.kind === 'instance' ? w.instance.weights : undefined, { passing: 65535, warning: 1 });
});
