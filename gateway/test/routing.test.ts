// `gantry gateway` against a real Consul with busybox httpd containers (and a
// few in-test upstreams where the test must see what arrived): routing by host
// and path, changes in Consul live, forwarding headers, 502/503/504 with a
// request id, streaming, WebSocket echo, hostile requests refused with 400.
import test from 'ava';
import net from 'node:net';
import http from 'node:http';
import type Docker from 'dockerode';
import { manageEngines } from '../../test/harness/ava.ts';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { ensureDocker, newRunId, cleanupContainers } from '../../test/harness/engines/docker.ts';
import { freePort, waitUntil } from '../../test/harness/process.ts';
import {
  register, deregister, setCheck, startGateway, waitInstances, request, busybox, testUpstream, load, waitCount,
  closeClients, type Gw, type TestUpstream,
} from './helpers.ts';

const track = manageEngines(test);
const runId = newRunId();
let consul: ConsulEngine;
let docker: Docker;
let gw: Gw;
let web: { ip: string };
let api: { ip: string };
let echo: TestUpstream;
const ups: TestUpstream[] = [];

test.before(async () => {
  consul = await startConsul();
  track('consul', consul);
  docker = await ensureDocker();
  [web, api, echo] = await Promise.all([
    busybox(docker, runId, 'web', 'web-a', ['app']),
    busybox(docker, runId, 'api', 'api-svc', ['api', 'api/v1']),
    testUpstream('echo', (req, res) => req.on('end', () => {
      res.setHeader('connection', 'keep-alive, x-secret-hop');
      res.setHeader('x-secret-hop', 'must-not-reach-the-client');
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    })),
  ]);
  ups.push(echo);
  await register(consul.addr, { id: 'web-1', name: 'web', address: web.ip, port: 80, tags: ['urlprefix-/app', 'urlprefix-/shop strip=/shop', 'gantry.host=shop.example.com'] });
  await register(consul.addr, { id: 'api-1', name: 'api', address: api.ip, port: 80, tags: ['urlprefix-api.example.com/', 'urlprefix-/api', 'urlprefix-/api/v1'] });
  await register(consul.addr, { id: 'echo-1', name: 'echo', address: '127.0.0.1', port: echo.port, tags: ['urlprefix-/echo'] });
  gw = await startGateway(consul.addr, ['--header-timeout', '1500ms']);
  track('gateway', gw);
  await waitInstances(gw, '*', '/echo', 'echo', ['echo-1']);
  await waitInstances(gw, '*', '/api', 'api', ['api-1']);
  await waitInstances(gw, '*', '/app', 'web', ['web-1']);
});

test.after.always(async () => {
  closeClients();
  await Promise.allSettled(ups.map((u) => u.close()));
  if (docker) await cleanupContainers(docker, runId);
});

test('routes by <service>.<domain>, gantry.host, urlprefix host and path; longest prefix, host before path; strip', async (t) => {
  const get = (host: string, path: string) => request(`${gw.url}${path}`, { host });
  t.is((await get('web.gantry.test', '/')).body.trim(), 'web-a');
  t.is((await get('WEB.gantry.test.:80', '/')).body.trim(), 'web-a');
  t.is((await get('shop.example.com', '/')).body.trim(), 'web-a');
  t.is((await get('api.example.com', '/')).body.trim(), 'api-svc');
  t.is((await get('anything.example', '/app/')).body.trim(), 'web-a');
  t.is((await get('anything.example', '/api/v1/')).body.trim(), 'api-svc'); // /api/v1 longest
  t.is((await get('api.example.com', '/app/')).status, 404); // host route first: api has no /app/ file
  t.is((await get('anything.example', '/shop/')).body.trim(), 'web-a'); // strip=/shop → /
  const none = await get('nothing.example', '/nope');
  t.is(none.status, 404);
  t.regex(String(none.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  t.true(none.body.includes(String(none.headers['x-request-id'])));
});

test('forwarding headers set, hop-by-hop removed both ways, request id passed through', async (t) => {
  const r = await request(`${gw.url}/echo/x?y=1`, {
    host: 'front.example', headers: { 'x-forwarded-for': '203.0.113.9', connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'x-request-id': 'req-123', te: 'trailers' },
  });
  t.is(r.status, 200);
  const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
  t.is(seen.url, '/echo/x?y=1');
  t.is(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  t.is(seen.headers['x-forwarded-proto'], 'http');
  t.is(seen.headers['x-forwarded-host'], 'front.example');
  t.is(seen.headers.forwarded, 'for=127.0.0.1;host="front.example";proto=http');
  t.is(seen.headers.host, 'front.example');
  t.is(seen.headers['x-request-id'], 'req-123');
  t.is(seen.headers['x-hop'], undefined);
  t.is(seen.headers.te, undefined);
  t.is(r.headers['x-secret-hop'], undefined);
  t.is(r.headers['x-request-id'], 'req-123');
});

test('a change in Consul is live: new instance, critical instance, deregistration', async (t) => {
  // A service of its own: tests in this file run concurrently, and another
  // test's request to /echo must not land on an instance this one adds.
  const [a, b] = await Promise.all([testUpstream('live-a'), testUpstream('live-b')]);
  ups.push(a, b);
  await register(consul.addr, { id: 'live-1', name: 'live', address: '127.0.0.1', port: a.port, tags: ['urlprefix-/live'] });
  await waitInstances(gw, '*', '/live', 'live', ['live-1']);
  await register(consul.addr, { id: 'live-2', name: 'live', address: '127.0.0.1', port: b.port, tags: ['urlprefix-/live'], ttl: true });
  await waitInstances(gw, '*', '/live', 'live', ['live-1', 'live-2']);
  await waitCount('live-2 served', async () => { await request(`${gw.url}/live`); return b.count; }, 1);
  await setCheck(consul.addr, 'live-2', 'fail');
  await waitInstances(gw, '*', '/live', 'live', ['live-1']);
  const before = b.count;
  const aBefore = a.count;
  await load(`${gw.url}/live`, { count: 20, concurrency: 4 });
  t.is(b.count, before, 'a critical instance receives no traffic');
  t.is(a.count - aBefore, 20, 'the healthy instance serves every request');
  await setCheck(consul.addr, 'live-2', 'pass');
  await waitInstances(gw, '*', '/live', 'live', ['live-1', 'live-2']);
  await deregister(consul.addr, 'live-2');
  await waitInstances(gw, '*', '/live', 'live', ['live-1']);
});

test('503 without a healthy instance, 502 when unreachable, 504 when too slow — each with a request id', async (t) => {
  const closed = await freePort();
  await register(consul.addr, { id: 'gone-1', name: 'gone', address: '127.0.0.1', port: closed, tags: ['urlprefix-/gone'] });
  await register(consul.addr, { id: 'sick-1', name: 'sick', address: '127.0.0.1', port: closed, tags: ['urlprefix-/sick'], ttl: true });
  await setCheck(consul.addr, 'sick-1', 'fail');
  const slow = await testUpstream('slow', (req, res) => { setTimeout(() => res.end('late'), 4000); });
  ups.push(slow);
  await register(consul.addr, { id: 'slow-1', name: 'slow', address: '127.0.0.1', port: slow.port, tags: ['urlprefix-/slow'] });
  await waitInstances(gw, '*', '/gone', 'gone', ['gone-1']);
  await waitInstances(gw, '*', '/sick', 'sick', []);
  await waitInstances(gw, '*', '/slow', 'slow', ['slow-1']);
  for (const [path, status] of [['/gone', 502], ['/sick', 503], ['/slow', 504]] as const) {
    const r = await request(`${gw.url}${path}`);
    t.is(r.status, status, path);
    const id = String(r.headers['x-request-id']);
    t.regex(id, /^[0-9a-f-]{36}$/);
    t.is((JSON.parse(r.body) as { requestId: string }).requestId, id);
  }
  await waitCount('access log line of a 504', () => gw.logs().filter((l) => l.msg === 'access' && l.status === 504).length, 1);
});

test('a draining instance (deregistered mid-request) finishes its in-flight request', async (t) => {
  let started!: () => void;
  const inFlight = new Promise<void>((r) => { started = r; });
  let finish!: () => void;
  const finished = new Promise<void>((r) => { finish = r; });
  const drain = await testUpstream('drain', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('fin');
    started();
    void finished.then(() => res.end('ished'));
  });
  ups.push(drain);
  await register(consul.addr, { id: 'drain-1', name: 'drain', address: '127.0.0.1', port: drain.port, tags: ['urlprefix-/drain'] });
  await waitInstances(gw, '*', '/drain', 'drain', ['drain-1']);
  let done = false;
  const pending = request(`${gw.url}/drain`).finally(() => { done = true; });
  await inFlight;
  await deregister(consul.addr, 'drain-1');
  await waitCount('the route gone from the table', async () => ((await gw.routes()).routes.some((r) => r.path === '/drain') ? 0 : 1), 1);
  t.false(done, 'still in flight when the instance left the table');
  t.is((await request(`${gw.url}/drain`)).status, 404, 'no new request reaches it');
  finish();
  const r = await pending;
  t.is(r.status, 200);
  t.is(r.body, 'finished');
});

test('bodies stream both ways (5 MB up, 8 MB down) through the gateway', async (t) => {
  const big = await testUpstream('big', (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => {
      res.setHeader('x-received', String(n));
      const chunk = Buffer.alloc(64 * 1024, 120);
      let left = 128;
      const pump = (): void => { while (left > 0) { left--; if (!res.write(chunk)) { res.once('drain', pump); return; } } res.end(); };
      pump();
    });
  });
  ups.push(big);
  await register(consul.addr, { id: 'big-1', name: 'big', address: '127.0.0.1', port: big.port, tags: ['urlprefix-/big'] });
  await waitInstances(gw, '*', '/big', 'big', ['big-1']);
  const res = await new Promise<{ status: number; received: string; bytes: number }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/big', method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (r) => {
      let bytes = 0;
      r.on('data', (c: Buffer) => { bytes += c.length; });
      r.on('end', () => resolve({ status: r.statusCode ?? 0, received: String(r.headers['x-received']), bytes }));
    });
    req.on('error', reject);
    const piece = Buffer.alloc(256 * 1024, 97);
    let left = 20;
    const pump = (): void => { while (left > 0) { left--; if (!req.write(piece)) { req.once('drain', pump); return; } } req.end(); };
    pump();
  });
  t.is(res.status, 200);
  t.is(res.received, String(20 * 256 * 1024));
  t.is(res.bytes, 128 * 64 * 1024);
});

test('WebSocket echo through the gateway', async (t) => {
  const ws = await testUpstream('ws');
  ups.push(ws);
  await register(consul.addr, { id: 'ws-1', name: 'wsecho', address: '127.0.0.1', port: ws.port, tags: ['urlprefix-/ws'] });
  await waitInstances(gw, '*', '/ws', 'wsecho', ['ws-1']);
  const sock = new WebSocket(`ws://127.0.0.1:${gw.port}/ws/chat`);
  const got: string[] = [];
  await new Promise<void>((resolve, reject) => {
    sock.addEventListener('open', () => { sock.send('hello'); sock.send('x'.repeat(1000)); });
    sock.addEventListener('message', (e) => { got.push(String(e.data)); if (got.length === 2) resolve(); });
    sock.addEventListener('error', () => reject(new Error('websocket error')));
    setTimeout(() => reject(new Error(`no echo in time (got ${got.length})`)), 15_000);
  });
  sock.close();
  t.deepEqual(got, ['hello', 'x'.repeat(1000)]);
});

function raw(port: number, data: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    s.on('data', (c) => { out += c.toString('latin1'); });
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    s.setTimeout(10_000, () => s.destroy());
    s.write(data);
  });
}

test.serial('smuggling, header injection, oversized headers and absurd Host are refused with 400 and logged; others keep being served', async (t) => {
  const cases: Record<string, string> = {
    'CL and TE': 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'duplicate CL': 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx',
    'duplicate equal CL': 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    'TE not chunked': 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n',
    'TE list': 'POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    'obs-fold': 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n',
    'CR in value': 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Injected: 1\r\n\r\n',
    'LF in value': 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\nX-Injected: 1\r\n\r\n',
    'NUL in value': 'GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\u0000c\r\n\r\n',
    'oversized headers': `GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`,
    'absurd Host': 'GET /echo HTTP/1.1\r\nHost: a b"<script>\r\n\r\n',
    'long Host': `GET /echo HTTP/1.1\r\nHost: ${'a'.repeat(300)}\r\n\r\n`,
    'two Hosts': 'GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'no Host': 'GET /echo HTTP/1.1\r\n\r\n',
  };
  const before = echo.count;
  const hostileBefore = await gw.metric('gantry_gateway_hostile_requests_total');
  for (const [name, data] of Object.entries(cases)) {
    const out = await raw(gw.port, Buffer.from(data, 'latin1'));
    t.regex(out, /^HTTP\/1\.1 400 /, name);
  }
  t.is(echo.count, before, 'nothing reached the upstream');
  // at least one a case (bytes left after a refused request may be refused as one more)
  t.true(await gw.metric('gantry_gateway_hostile_requests_total') - hostileBefore >= Object.keys(cases).length);
  const logged = gw.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('hostile or malformed request refused'));
  t.true(logged.length >= Object.keys(cases).length);
  t.true(logged.some((l) => l.reason === 'absurd Host header'));
  const ok = await raw(gw.port, 'GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  t.regex(ok, /^HTTP\/1\.1 200 /);
});

test('admin: /routes shows the live table, /metrics counts per route, /healthz is ok', async (t) => {
  const table = await gw.routes();
  t.true(table.routes.some((r) => r.host === 'api.example.com' && r.path === '/'));
  t.true(table.routes.some((r) => r.host === 'web.gantry.test'));
  await request(`${gw.url}/api/`);
  t.true(await gw.metric('gantry_gateway_requests_total', { route: '*/api', code: '2xx' }) >= 1);
  t.true(await gw.metric('gantry_gateway_request_duration_seconds_count', { route: '*/api' }) >= 1);
  const h = await gw.health();
  t.is(h.ok, true);
  // the access log is written in batches, at most 250 ms late
  await waitUntil('the access log line', async () => gw.logs().some((l) => l.msg === 'access' && l.route === '*/api' && l.status === 200 && typeof l.requestId === 'string'), { timeoutMs: 3000, intervalMs: 50 });
  t.true(gw.logs().some((l) => l.msg === 'access' && l.route === '*/api' && l.status === 200 && typeof l.requestId === 'string'));
});
