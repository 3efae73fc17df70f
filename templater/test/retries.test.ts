// The shipped template's retries: an instance that dies mid-request (a container
// stopped before its deregistration reached HAProxy) costs an idempotent request
// nothing — it is tried again on another instance — while a POST is not replayed.
import test from 'ava';
import http from 'node:http';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { register, namedServer, send } from './helpers.ts';
import { startStack } from './stack.ts';

const track = manageEngines(test);

/** accepts a request, then closes the connection without a byte of answer */
async function dyingServer(): Promise<{ port: number; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const srv = http.createServer((req) => { requests.push(req.method ?? ''); req.socket.destroy(); });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { port: (srv.address() as { port: number }).port, requests, close: () => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }) };
}

test('an instance that closes mid-request: a GET is answered by the other instance, a POST is not replayed (502)', async (t) => {
  const st = await startStack(t, track);
  const good = await namedServer('good');
  const dying = await dyingServer();
  t.teardown(async () => { await good.close(); await dying.close(); });
  await register(st.consul.addr, { id: 'pay-good', name: 'pay', port: good.port, check: 'passing' });
  await register(st.consul.addr, { id: 'pay-dying', name: 'pay', port: dying.port, check: 'passing' });
  const port = st.haproxy.httpPort;
  // both instances in HAProxy: the dying one has been sent a request
  await waitUntil('both instances served', async () => {
    for (let i = 0; i < 4; i++) await send(port, 'GET', 'pay.gantry.test', { timeoutMs: 10_000 }).catch(() => undefined);
    return dying.requests.length > 0 && good.hits > 0;
  }, { timeoutMs: 20_000 });

  // round robin sends every other request to the dying instance: 20 GETs, every one answered by good
  const gets: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await send(port, 'GET', 'pay.gantry.test', { timeoutMs: 10_000 });
    gets.push(r.status);
    t.is(r.body, 'good');
  }
  t.deepEqual([...new Set(gets)], [200]);
  const before = dying.requests.filter((m) => m === 'GET').length;
  t.true(before >= 10, `the dying instance was tried (${before} GETs reached it)`);

  // a POST that reaches the dying instance fails rather than running twice
  const posts: number[] = [];
  for (let i = 0; i < 6; i++) posts.push((await send(port, 'POST', 'pay.gantry.test', { body: '{}', timeoutMs: 10_000 })).status);
  const postsToDying = dying.requests.filter((m) => m === 'POST').length;
  t.true(postsToDying > 0, 'some POSTs reached the dying instance');
  t.is(posts.filter((s) => s === 502).length, postsToDying, 'each POST the dying instance took is a 502, never replayed on the other');
  t.is(posts.filter((s) => s === 200).length, 6 - postsToDying);
});
