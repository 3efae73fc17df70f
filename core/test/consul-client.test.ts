// The Consul client factory against a real agent with ACLs on: token from a
// flag or a token file, and the token never shows in errors or logs.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { createConsul } from '../src/consul.ts';
import { createLogger, redactUrl } from '../src/logger.ts';

const track = manageEngines(test);
const MANAGEMENT = 'b1gs3cr3t-0000-4000-8000-000000000001';
let consul: ConsulEngine;

test.before(async () => {
  consul = await startConsul({ hcl: `acl { enabled = true default_policy = "deny" tokens { initial_management = "${MANAGEMENT}" } }` });
  track('consul', consul);
});

test('without a token the agent refuses; with the token (flag or file) it answers', async (t) => {
  const anon = createConsul({ addr: consul.addr });
  const err = await t.throwsAsync(anon.request('PUT', '/v1/kv/gantry/x', { body: 'v' }));
  t.regex(err.message, /403/);
  anon.close();

  const withToken = createConsul({ addr: consul.addr, token: MANAGEMENT });
  await withToken.api.kv.set('gantry/x', 'from-token');
  withToken.close();

  const file = join(consul.dir, 'token');
  writeFileSync(file, `${MANAGEMENT}\n`, { mode: 0o600 });
  const fromFile = createConsul({ addr: consul.addr.replace('http://', ''), tokenFile: file });
  const got = await fromFile.request<Array<{ Value: string }>>('GET', '/v1/kv/gantry/x');
  t.is(Buffer.from(got.body[0]!.Value, 'base64').toString(), 'from-token');
  t.truthy(got.index);
  fromFile.close();
});

test('a blocking query returns when the key changes, with a larger index', async (t) => {
  const c = createConsul({ addr: consul.addr, token: MANAGEMENT });
  await c.api.kv.set('gantry/block', '1');
  const first = await c.request('GET', '/v1/kv/gantry/block');
  const pending = c.request('GET', '/v1/kv/gantry/block', { index: first.index, wait: '10s', timeoutMs: 15_000 });
  await c.api.kv.set('gantry/block', '2');
  const second = await pending;
  t.true(BigInt(second.index!) > BigInt(first.index!));
  const ac = new AbortController();
  const aborted = c.request('GET', '/v1/kv/gantry/block', { index: second.index, wait: '10s', signal: ac.signal, timeoutMs: 15_000 });
  ac.abort();
  await t.throwsAsync(aborted, { name: 'AbortError' });
  c.close();
});

test('the token never appears in errors or logs', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString()); cb(); } });
  const log = createLogger({ component: 'test', destination: sink });
  const c = createConsul({ addr: 'http://127.0.0.1:1', token: MANAGEMENT });
  const err = await t.throwsAsync(c.request('GET', '/v1/agent/self', { timeoutMs: 2000 }));
  log.error({ err, token: MANAGEMENT, consul: { token: MANAGEMENT }, headers: { 'x-consul-token': MANAGEMENT } }, 'request failed');
  c.close();
  t.false(err.message.includes(MANAGEMENT));
  t.is(lines.length, 1);
  t.false(lines.join('').includes(MANAGEMENT));
  t.true(lines.join('').includes('[redacted]'));
  t.is(redactUrl('redis://:pw@127.0.0.1:6379/0'), 'redis://127.0.0.1:6379/0');
  t.false(redactUrl('redis://user:pw@h:1').includes('pw'));
});

test('a bad address is refused with the address named', (t) => {
  const err = t.throws(() => createConsul({ addr: 'ftp://x:1' }));
  t.regex(err.message, /invalid Consul address "ftp:\/\/x:1"/);
});
