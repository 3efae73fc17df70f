// The gateway's fast path (proxy/fast/) against a real Consul, with an in-test
// upstream that writes its answers byte by byte as the test needs (chunked,
// close-delimited, split heads, a kept-alive connection closed under a reused
// request, a broken answer) and raw client sockets (pipelining, slow heads,
// idle connections). Requests it does not take go to Node's server: counted.
import test from 'ava';
import net from 'node:net';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { manageEngines } from '../../test/harness/ava.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { sleep, waitUntil, tempDir, removeDir } from '../../test/harness/process.ts';
import { register, setCheck, startGateway, waitInstances, request, closeClients, type Gw } from './helpers.ts';

const track = manageEngines(test);
let consul: ConsulEngine;
let gw: Gw;
let upstream: net.Server;
/** requests the upstream saw, by path */
const seen = new Map<string, number>();
/** upstream connections that carried the reuse test's first request */
const reuseConns = new WeakSet<net.Socket>();

function answer(s: net.Socket, method: string, path: string): void {
  seen.set(path, (seen.get(path) ?? 0) + 1);
  const w = (x: string | Buffer): boolean => s.write(x);
  switch (path) {
    case '/chunked': // a chunked body with an extension and a trailer, written in pieces
      w('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r');
      setTimeout(() => w('\nhello\r\n6;ext=1\r\n wor'), 20);
      setTimeout(() => w('ld\r\n0\r\nX-Trailer: t\r'), 40);
      setTimeout(() => w('\n\r\n'), 60);
      return;
    case '/close': // no length: the body ends when the upstream closes
      w('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ');
      setTimeout(() => s.end('close'), 30);
      return;
    case '/split': { // the head a byte at a time
      const text = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Name: caf\xe9\r\n\r\nsplit';
      let i = 0;
      const next = (): void => { if (i < text.length) { w(Buffer.from(text[i++]!, 'latin1')); setTimeout(next, 1); } };
      next();
      return;
    }
    case '/reuse': // answers once per connection; a second request on it is met with a close (a kept-alive connection the upstream dropped)
      if (reuseConns.has(s)) { s.destroy(); return; }
      reuseConns.add(s);
      w('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreuse');
      return;
    case '/bad':
      w('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nbad');
      return;
    default: {
      const body = `${method} ${path}`;
      w(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${method === 'HEAD' ? '' : body}`);
    }
  }
}

test.before(async () => {
  consul = await startConsul();
  track('consul', consul);
  upstream = net.createServer((s) => {
    let buf = '';
    s.on('error', () => undefined);
    s.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        const total = end + 4 + (cl ? Number(cl[1]) : 0);
        if (buf.length < total) return;
        buf = buf.slice(total);
        const [method, path] = head.split(' ') as [string, string];
        answer(s, method, path);
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as net.AddressInfo).port;
  await register(consul.addr, { id: 'raw-1', name: 'raw', address: '127.0.0.1', port, tags: ['urlprefix-/'] });
  await register(consul.addr, { id: 'dead-1', name: 'dead', address: '127.0.0.1', port, ttl: true });
  await setCheck(consul.addr, 'dead-1', 'fail');
  gw = await startGateway(consul.addr, ['--client-header-timeout', '1s', '--client-idle-timeout', '2s']);
  track('gateway', gw);
  await waitInstances(gw, '*', '/', 'raw', ['raw-1']);
  await waitInstances(gw, 'dead.gantry.test', '/', 'dead', []);
});

test.after.always(() => { upstream?.close(); closeClients(); });

/** one client connection: writes, and reads until `done` says the bytes so far are complete (or the socket closes) */
function client(): { send(text: string, done: (got: string) => boolean, timeoutMs?: number): Promise<string>; closed: Promise<void>; socket: net.Socket } {
  const socket = net.connect(gw.port, '127.0.0.1');
  let got = '';
  let waiter: (() => void) | undefined;
  const closed = new Promise<void>((r) => socket.on('close', () => { r(); waiter?.(); }));
  socket.on('data', (b: Buffer) => { got += b.toString('latin1'); waiter?.(); });
  socket.on('error', () => undefined);
  return {
    socket, closed,
    send(text, done, timeoutMs = 10_000) {
      got = '';
      socket.write(Buffer.from(text, 'latin1'));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no complete answer in time; got ${JSON.stringify(got)}`)), timeoutMs);
        waiter = () => { if (done(got) || socket.destroyed) { clearTimeout(timer); waiter = undefined; resolve(got); } };
        waiter();
      });
    },
  };
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: raw.gantry.test\r\n${extra}\r\n`;
const count = (s: string, sub: string): number => s.split(sub).length - 1;

test.serial('plain GETs stay on the fast path; pipelined requests are answered in order on one connection', async (t) => {
  const before = await gw.metric('gantry_gateway_fast_path_handoffs_total');
  const c = client();
  const got = await c.send(get('/one') + get('/two') + get('/three'), (g) => g.endsWith('GET /three'));
  t.is(count(got, 'HTTP/1.1 200 OK'), 3);
  t.true(got.indexOf('GET /one') < got.indexOf('GET /two') && got.indexOf('GET /two') < got.indexOf('GET /three'));
  t.regex(got, /x-request-id: [0-9a-f-]{36}\r\n/);
  const head = await c.send(`HEAD /h HTTP/1.1\r\nHost: raw.gantry.test\r\n\r\n`, (g) => g.includes('\r\n\r\n'));
  t.regex(head, /^HTTP\/1\.1 200 OK\r\nContent-Length: 7\r\n/);
  t.is(head.slice(head.indexOf('\r\n\r\n') + 4), '', 'no body after a HEAD answer');
  t.regex(await c.send(get('/after-head'), (g) => g.endsWith('GET /after-head')), /200 OK/, 'the connection goes on after HEAD');
  // answered at once (a route without a healthy instance: 503) with more pipelined behind it
  const mixed = await c.send(`GET /x HTTP/1.1\r\nHost: dead.gantry.test\r\n\r\n${get('/after-503')}`, (g) => g.endsWith('GET /after-503'));
  t.regex(mixed, /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*no healthy instance of dead[\s\S]*HTTP\/1\.1 200 OK/);
  c.socket.destroy();
  t.is(await gw.metric('gantry_gateway_fast_path_handoffs_total'), before, 'nothing was handed to Node');
});

test.serial('chunked, close-delimited and byte-by-byte answers pass through unchanged', async (t) => {
  const c = client();
  const chunked = await c.send(get('/chunked'), (g) => g.endsWith('0\r\nX-Trailer: t\r\n\r\n'));
  t.true(chunked.startsWith('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n'));
  t.true(chunked.endsWith('\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n'));
  const split = await c.send(get('/split'), (g) => g.endsWith('split'));
  t.true(split.includes('X-Name: caf\xe9\r\n'), 'a latin1 header value byte for byte');
  const close = await c.send(get('/close'), () => false);
  t.true(close.includes('connection: close\r\n'));
  t.true(close.endsWith('\r\n\r\nuntil close'));
  await c.closed;
  t.pass('the client connection closes with a close-delimited body');
});

test.serial('a kept-alive upstream connection closed under a reused request: sent again on a new one, no error counted', async (t) => {
  const errorsBefore = await gw.metric('gantry_gateway_upstream_errors_total');
  const c = client();
  t.true((await c.send(get('/reuse'), (g) => g.endsWith('reuse'))).startsWith('HTTP/1.1 200'));
  const again = await c.send(get('/reuse'), (g) => g.endsWith('reuse'));
  t.true(again.startsWith('HTTP/1.1 200'), again);
  t.is(seen.get('/reuse'), 3, 'the upstream saw the second request twice: on the dropped connection and on a new one');
  t.is(await gw.metric('gantry_gateway_upstream_errors_total'), errorsBefore);
  c.socket.destroy();
});

test.serial('an upstream answer with conflicting lengths is a 502 with a request id; the connection and the gateway go on', async (t) => {
  const c = client();
  const bad = await c.send(get('/bad'), (g) => g.includes('}\n'));
  t.regex(bad, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.regex(bad, /"requestId":"[0-9a-f-]{36}"/);
  t.regex(await c.send(get('/fine'), (g) => g.endsWith('GET /fine')), /200 OK/);
  c.socket.destroy();
});

test.serial('requests the fast path does not take are handed to Node with the reason: a POST, HTTP/1.0, a duplicate header, a hostile head', async (t) => {
  const method = await gw.metric('gantry_gateway_fast_path_handoffs_total', { reason: 'method' });
  const c = client();
  const post = await c.send('POST /p HTTP/1.1\r\nHost: raw.gantry.test\r\nContent-Length: 2\r\n\r\nhi', (g) => g.endsWith('POST /p'));
  t.regex(post, /^HTTP\/1\.1 200 OK/);
  t.is(await gw.metric('gantry_gateway_fast_path_handoffs_total', { reason: 'method' }), method + 1);
  t.regex(await c.send(get('/then'), (g) => g.endsWith('GET /then')), /200 OK/, 'Node serves the rest of that connection');
  c.socket.destroy();
  const version = await gw.metric('gantry_gateway_fast_path_handoffs_total', { reason: 'version' });
  const c10 = client();
  t.regex(await c10.send('GET /old HTTP/1.0\r\nHost: raw.gantry.test\r\n\r\n', (g) => g.endsWith('GET /old')), /^HTTP\/1\.1 200 OK/);
  t.is(await gw.metric('gantry_gateway_fast_path_handoffs_total', { reason: 'version' }), version + 1);
  c10.socket.destroy();
  const c2 = client();
  t.regex(await c2.send(get('/dup', 'X-A: 1\r\nX-A: 2\r\n'), (g) => g.endsWith('GET /dup')), /200 OK/, 'Node joins the duplicates as before');
  c2.socket.destroy();
  // a request pipelined behind the one that causes the hand-off: Node gets both bytes, in order
  const piped = client();
  const both = await piped.send(`DELETE /d1 HTTP/1.1\r\nHost: raw.gantry.test\r\nContent-Length: 1\r\n\r\nx${get('/behind')}`, (g) => g.endsWith('GET /behind'));
  t.true(both.indexOf('DELETE /d1') !== -1 && both.indexOf('DELETE /d1') < both.indexOf('GET /behind'), both);
  piped.socket.destroy();
  const smuggle = client();
  const refused = await smuggle.send('GET / HTTP/1.1\r\nHost: raw.gantry.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', (g) => g.includes('}\n'));
  t.regex(refused, /^HTTP\/1\.1 400 /, 'a hostile head handed over is refused by Node as before');
});

test.serial('a head that does not arrive in time gets 408; an idle keep-alive connection is closed', async (t) => {
  const slow = client();
  const got = await slow.send('GET / HTTP/1.1\r\nHost: raw.gant', (g) => g.includes('}\n'), 8000);
  t.regex(got, /^HTTP\/1\.1 408 /);
  await slow.closed;
  const idle = client();
  t.regex(await idle.send(get('/idle'), (g) => g.endsWith('GET /idle')), /200 OK/);
  const t0 = Date.now();
  await Promise.race([idle.closed, sleep(8000)]);
  t.true(idle.socket.destroyed, 'closed by the gateway');
  t.true(Date.now() - t0 >= 1000, 'not before the idle timeout');
});

test.serial('the upstream pool keeps its connections: many requests, few upstream connections', async (t) => {
  let conns = 0;
  const counter = (): void => { conns++; };
  upstream.on('connection', counter);
  const c = client();
  for (let i = 0; i < 50; i++) await c.send(get(`/n${i}`), (g) => g.endsWith(`GET /n${i}`));
  upstream.off('connection', counter);
  c.socket.destroy();
  t.true(conns <= 1, `${conns} new upstream connections for 50 sequential requests`);
  await waitUntil('gateway still healthy', async () => (await gw.health()).ok === true, { timeoutMs: 5000 });
});

test.serial('proto=https upstreams: TLS on the fast path and on Node\'s (a body), verified unless tlsskipverify=true', async (t) => {
  // a self-signed certificate for 127.0.0.1, made by openssl here
  const dir = tempDir('gw-tls');
  t.teardown(() => removeDir(dir));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'pipe' });
  const secure = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { body += c; });
    req.on('end', () => res.end(`tls ${req.method} ${req.url} ${body} ${(req.socket as TLSSocket).encrypted ? 'encrypted' : 'plain'}`));
  });
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  t.teardown(() => { secure.closeAllConnections(); secure.close(); });
  const port = (secure.address() as net.AddressInfo).port;
  await register(consul.addr, { id: 'tls-1', name: 'tls', address: '127.0.0.1', port, tags: ['urlprefix-tls.gantry.test/ proto=https tlsskipverify=true'] });
  await register(consul.addr, { id: 'tlsv-1', name: 'tlsv', address: '127.0.0.1', port, tags: ['urlprefix-tlsv.gantry.test/ proto=https'] });
  await waitInstances(gw, 'tls.gantry.test', '/', 'tls', ['tls-1']);
  await waitInstances(gw, 'tlsv.gantry.test', '/', 'tlsv', ['tlsv-1']);
  const handoffs = await gw.metric('gantry_gateway_fast_path_handoffs_total');
  const c = client();
  const got = await c.send('GET /a HTTP/1.1\r\nHost: tls.gantry.test\r\n\r\nGET /b HTTP/1.1\r\nHost: tls.gantry.test\r\n\r\n', (g) => g.endsWith('GET /b  encrypted'));
  t.is(count(got, 'HTTP/1.1 200 OK'), 2);
  t.true(got.includes('tls GET /a  encrypted') && got.indexOf('GET /a') < got.indexOf('GET /b'));
  c.socket.destroy();
  t.is(await gw.metric('gantry_gateway_fast_path_handoffs_total'), handoffs, 'GETs to a TLS upstream stay on the fast path');
  // a body goes through Node's server and undici's pool, over TLS too
  const post = await request(`http://127.0.0.1:${gw.port}/p`, { host: 'tls.gantry.test', method: 'POST', body: 'payload' });
  t.is(post.status, 200);
  t.is(post.body, 'tls POST /p payload encrypted');
  // without tlsskipverify the self-signed certificate is refused: 502 on both paths, nothing reaches the upstream's handler
  const fast = await request(`http://127.0.0.1:${gw.port}/v`, { host: 'tlsv.gantry.test' });
  t.is(fast.status, 502);
  t.regex(fast.body, /"requestId"/);
  const slow = await request(`http://127.0.0.1:${gw.port}/v`, { host: 'tlsv.gantry.test', method: 'POST', body: 'x' });
  t.is(slow.status, 502);
});
