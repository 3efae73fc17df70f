// The fast path's parsers (proxy/fast/head.ts): which request heads it takes
// and which it hands to Node's server, how upstream response heads are checked
// and rewritten, and where a chunked body ends however its bytes are split.
import test from 'ava';
import { ChunkedTracker, parseRequestHead, parseResponseHead, type HandOff, type RequestHead } from '../src/proxy/fast/head.ts';
import { fastUpstreamHead } from '../src/proxy/headers.ts';

const head = (lines: string[]): string => lines.join('\r\n');

test('a plain GET is taken; names keep their case, Connection close and listed names are seen', (t) => {
  const h = parseRequestHead(head(['GET /a?b=1 HTTP/1.1', 'Host: web.gantry.test', 'X-Custom: v  ', 'Connection: close, X-Hop'])) as RequestHead;
  t.is(typeof h, 'object');
  t.is(h.method, 'GET');
  t.is(h.target, '/a?b=1');
  t.is(h.host, 'web.gantry.test');
  t.true(h.close);
  t.deepEqual(h.connectionListed, ['x-hop']);
  t.deepEqual(h.headers[1], { name: 'X-Custom', key: 'x-custom', value: 'v' });
});

test('heads the fast path does not take go to Node with the reason', (t) => {
  const base = ['Host: a.test'];
  const cases: Array<[string[], HandOff]> = [
    [['POST / HTTP/1.1', ...base, 'Content-Length: 3'], 'method'],
    [['GET / HTTP/1.0', ...base], 'version'],
    [['GET / HTTP/1.1', ...base, 'Content-Length: 5'], 'body'],
    [['GET / HTTP/1.1', ...base, 'Transfer-Encoding: chunked'], 'body'],
    [['GET / HTTP/1.1', ...base, 'Upgrade: websocket', 'Connection: Upgrade'], 'upgrade'],
    [['GET / HTTP/1.1', ...base, 'Expect: 100-continue'], 'expect'],
    [['GET / HTTP/1.1', ...base, 'X-A: 1', 'x-a: 2'], 'duplicate'],
    [['GET / HTTP/1.1', ...base, 'Host: b.test'], 'duplicate'],
    [['GET / HTTP/1.1'], 'host'],
    [['GET / HTTP/1.1', 'Host: a b'], 'host'],
    [['GET / HTTP/1.1', ...base, 'X-A: 1', ' folded'], 'syntax'],
    [['GET / HTTP/1.1', ...base, 'X-A: a\nb'], 'syntax'],
    [['GET / HTTP/1.1', ...base, 'X-A: a\rb'], 'syntax'],
    [['GET / HTTP/1.1', ...base, 'Bad Name: 1'], 'syntax'],
    [['GET / HTTP/1.1', ...base, 'X-A: caf\u00e9'], 'syntax'],
    [['GET http://a.test/ HTTP/1.1', ...base], 'syntax'],
    [['GET /a b HTTP/1.1', ...base], 'syntax'],
    [['GET  / HTTP/1.1', ...base], 'syntax'],
  ];
  for (const [lines, want] of cases) t.is(parseRequestHead(head(lines)), want, lines.join(' | '));
  t.is(typeof parseRequestHead(head(['GET / HTTP/1.1', ...base, 'Content-Length: 0'])), 'object', 'an empty body is no body');
});

test('the upstream head: forwarding headers set, client values appended or replaced, hop-by-hop ones out', (t) => {
  const h = parseRequestHead(head([
    'GET /shop/x HTTP/1.1', 'Host: shop.test', 'X-Forwarded-For: 10.0.0.1', 'Forwarded: for=10.0.0.1', 'X-Request-Id: old',
    'X-Forwarded-Proto: https', 'Keep-Alive: timeout=5', 'Connection: keep-alive, X-Hop', 'X-Hop: secret', 'Accept: */*',
  ])) as RequestHead;
  const out = fastUpstreamHead(h, '/x', { ip: '127.0.0.1', proto: 'http', host: 'shop.test', requestId: 'rid-1' });
  t.is(out, [
    'GET /x HTTP/1.1', 'Host: shop.test', 'Accept: */*',
    'x-forwarded-for: 10.0.0.1, 127.0.0.1', 'x-forwarded-proto: http', 'x-forwarded-host: shop.test',
    'forwarded: for=10.0.0.1, for=127.0.0.1;host="shop.test";proto=http', 'x-request-id: rid-1', '', '',
  ].join('\r\n'));
});

test('response heads: framing, reuse, hop-by-hop out, and what makes an upstream answer unusable', (t) => {
  const ok = parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 12', 'Connection: keep-alive, X-Hop', 'X-Hop: x', 'Keep-Alive: timeout=5', 'X-Request-Id: theirs', 'X-Name: caf\u00e9']), 'GET');
  t.like(ok, { status: 200, reason: 'OK', framing: { kind: 'length', length: 12 }, reusable: true, forward: 'Content-Length: 12\r\nX-Name: caf\u00e9\r\n' });
  t.like(parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked']), 'GET'), { framing: { kind: 'chunked' }, reusable: true });
  t.like(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Type: text/plain']), 'GET'), { framing: { kind: 'close' }, reusable: false });
  t.like(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 5']), 'HEAD'), { framing: { kind: 'none' }, reusable: true });
  t.like(parseResponseHead(head(['HTTP/1.1 304 Not Modified']), 'GET'), { framing: { kind: 'none' } });
  t.like(parseResponseHead(head(['HTTP/1.0 200 OK', 'Content-Length: 1']), 'GET'), { reusable: false });
  t.like(parseResponseHead(head(['HTTP/1.0 200 OK', 'Content-Length: 1', 'Connection: keep-alive']), 'GET'), { reusable: true });
  t.like(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 1', 'Connection: close']), 'GET'), { reusable: false });
  t.like(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 3']), 'GET'), { forward: 'Content-Length: 3\r\n' });
  const bad: Array<[string[], RegExp]> = [
    [['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 4'], /conflicting Content-Length/],
    [['HTTP/1.1 200 OK', 'Content-Length: -1'], /invalid/],
    [['HTTP/1.1 200 OK', 'Content-Length: 3', 'Transfer-Encoding: chunked'], /both/],
    [['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked, gzip'], /not ending in chunked/],
    [['HTTP/2 200'], /status line/],
    [['HTTP/1.1 200 OK', ' folded'], /header line/],
    [['HTTP/1.1 200 OK', 'X-A: a\u0000b'], /control character/],
  ];
  for (const [lines, want] of bad) t.regex(parseResponseHead(head(lines), 'GET') as string, want, lines.join(' | '));
});

test('a chunked body ends where its framing says, split anywhere; broken framing is refused', (t) => {
  const body = Buffer.from('5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
  const after = Buffer.from('HTTP/1.1 200 OK');
  for (let cut = 1; cut < body.length; cut++) {
    const c = new ChunkedTracker();
    t.is(c.feed(body.subarray(0, cut)), cut);
    t.false(c.done);
    t.is(c.feed(Buffer.concat([body.subarray(cut), after])), body.length - cut, `cut at ${cut}`);
    t.true(c.done);
  }
  const byByte = new ChunkedTracker();
  for (let i = 0; i < body.length; i++) t.is(byByte.feed(body.subarray(i, i + 1)), 1);
  t.true(byByte.done);
  for (const broken of ['x\r\n', '5\r\nhelloXX', '5\nhello\r\n', '0\r\nX: 1\n\r\n', `${'f'.repeat(13)}\r\n`]) {
    t.is(new ChunkedTracker().feed(Buffer.from(broken)), -1, JSON.stringify(broken));
  }
});
