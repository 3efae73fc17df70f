// Bad input and faults against a real Consul: invalid documents, Consul
// stopped/restarted/frozen while the app reads, start without Consul (with a
// snapshot, a corrupt one, none), ACL tokens and TLS.
import test from 'ava';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { consulBin } from '../../test/harness/bins.ts';
import { freePorts, REFUSED_PORT } from '../../test/harness/process.ts';
import { ConfigClient, type ChangeEvent } from '../src/index.ts';
import { captureLogs, kvClient, nextEvent, until } from './helpers.ts';
import { startGate } from './gate.ts';

const track = manageEngines(test);

async function consul(hcl?: string): Promise<ConsulEngine> {
  const e = await startConsul(hcl ? { hcl } : {});
  track('consul', e);
  return e;
}

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-config-client-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** fast retries, so a test sees recovery soon after the fault ends */
const fastRetry = { baseMs: 20, maxMs: 300 };

test('a document with invalid YAML or JSON is reported with its key and the parser message; its previous value stays; other keys update', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  await kv.txn([
    { set: 'docs/app/app.yaml', value: 'db:\n  url: postgres://one\n' },
    { set: 'docs/app/feature.json', value: '{"on": true}' },
    { set: 'docs/app/broken.json', value: '{"never": ' },
    { set: 'docs/app/plain', value: 'p1' },
  ]);
  const logs = captureLogs('warn');
  const config = await ConfigClient.start({ prefixes: ['docs/app/'], consul: { addr: engine.addr }, logger: logs.logger });
  t.teardown(() => config.close());
  t.is(config.get('db/url'), 'postgres://one');
  t.is(config.get('on'), true);
  t.false(config.has('never'), 'a document that never parsed adds nothing');
  const startLog = logs.lines().find((l) => l.key === 'docs/app/broken.json');
  t.truthy(startLog, 'an invalid document at start is logged with its key');
  t.regex(String(startLog?.err), /JSON|Unexpected|Expected/);

  const invalid = nextEvent(config, 'invalid');
  const changes = nextEvent(config, 'changes');
  await kv.txn([
    { set: 'docs/app/app.yaml', value: 'db:\n  url: [unclosed\n' },
    { set: 'docs/app/plain', value: 'p2' },
  ]);
  const bad = await invalid;
  t.is(bad.key, 'docs/app/app.yaml');
  t.is(bad.format, 'yaml');
  t.regex(bad.message, /flow sequence|unclosed|line \d+/i, 'the YAML parser says what and where');
  t.deepEqual(await changes, [{ key: 'plain', oldValue: 'p1', newValue: 'p2', type: 'modified' }], 'the other key of the same answer updates');
  t.is(config.get('db/url'), 'postgres://one', 'the previous parsed value stays');
  t.true(logs.lines().some((l) => l.key === 'docs/app/app.yaml' && typeof l.err === 'string' && /line/.test(l.err)));

  const jsonBad = nextEvent(config, 'invalid');
  await kv.put('docs/app/feature.json', '{"on": false,,}');
  t.is((await jsonBad).key, 'docs/app/feature.json');
  t.is(config.get('on'), true);

  const fixed = nextEvent(config, 'change', (e) => e.key === 'db/url');
  await kv.put('docs/app/app.yaml', 'db:\n  url: postgres://two\n');
  t.deepEqual(await fixed, { key: 'db/url', oldValue: 'postgres://one', newValue: 'postgres://two', type: 'modified' });
});

test('Consul stopped and started while the app reads: reads never fail, and changes made meanwhile arrive after it returns', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  const gate = await startGate(engine.httpPort);
  t.teardown(() => gate.close());
  await kv.txn([{ set: 'outage/app/a', value: '1' }, { set: 'outage/app/b', value: 'same' }]);
  const config = await ConfigClient.start({ prefixes: ['outage/app/'], consul: { addr: gate.addr }, wait: '10m', retry: fastRetry, logger: captureLogs('error').logger });
  t.teardown(() => config.close());

  const wrong: string[] = [];
  let reads = 0;
  const reader = setInterval(() => {
    for (let i = 0; i < 100; i++) {
      reads++;
      const a = config.get('a');
      const b = config.getString('b', 'MISSING');
      if ((a !== '1' && a !== '2') || b !== 'same') wrong.push(`a=${JSON.stringify(a)} b=${b}`);
    }
  }, 1);
  t.teardown(() => clearInterval(reader));
  const events: ChangeEvent[] = [];
  config.on('change', (e) => events.push(e));

  const noticed = nextEvent(config, 'warning', (w) => w.prefix === 'outage/app/');
  gate.shut();
  await engine.kill();
  await noticed;
  const readsWhileDown = reads;
  await engine.restart();
  // the restarted dev agent is empty: write the new state before the app can reach it
  await kv.txn([{ set: 'outage/app/a', value: '2' }, { set: 'outage/app/b', value: 'same' }, { set: 'outage/app/c', value: 'new' }]);
  t.is(config.get('a'), '1', 'still the last known value while Consul cannot be reached');
  const caughtUp = nextEvent(config, 'changes');
  gate.open();
  t.deepEqual(await caughtUp, [
    { key: 'a', oldValue: '1', newValue: '2', type: 'modified' },
    { key: 'c', oldValue: undefined, newValue: 'new', type: 'added' },
  ]);
  clearInterval(reader);
  t.true(reads > readsWhileDown, 'the reader kept reading during the outage');
  t.deepEqual(wrong, [], 'no read failed or saw a missing value');
  t.deepEqual(events.map((e) => e.key), ['a', 'c'], 'b, unchanged, gave no event');
  t.is(config.source, 'consul');

  const after = nextEvent(config, 'change');
  await kv.put('outage/app/a', '3');
  t.is((await after).newValue, '3', 'blocking queries go on after the outage');
});

test('Consul killed and restarted (a lower index): the client reads plainly again and converges', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  for (let i = 0; i < 30; i++) await kv.put('restart/app/counter', String(i)); // push the index up
  const config = await ConfigClient.start({ prefixes: ['restart/app/'], consul: { addr: engine.addr }, wait: '10m', retry: fastRetry, logger: captureLogs('error').logger });
  t.teardown(() => config.close());
  t.is(config.get('counter'), '29');
  let threw = 0;
  const reader = setInterval(() => { try { config.get('counter'); } catch { threw++; } }, 1);
  t.teardown(() => clearInterval(reader));
  await engine.kill();
  await engine.restart();
  await kv.put('restart/app/counter', 'after-restart');
  await until('the client to see the value written after the restart', () => config.get('counter') === 'after-restart');
  clearInterval(reader);
  t.is(threw, 0);
  t.is(config.source, 'consul');
});

test('Consul frozen (SIGSTOP): the request times out, reads go on, and it catches up once Consul runs again', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  await kv.put('frozen/app/a', '1');
  const config = await ConfigClient.start({ prefixes: ['frozen/app/'], consul: { addr: engine.addr }, wait: '1s', timeout: '1s', retry: fastRetry, logger: captureLogs('error').logger });
  t.teardown(() => config.close());
  const timedOut = nextEvent(config, 'warning', (w) => w.code === 'E_CONSUL_TIMEOUT');
  process.kill(engine.proc.pid, 'SIGSTOP');
  t.teardown(() => { try { process.kill(engine.proc.pid, 'SIGCONT'); } catch { /* gone */ } });
  const w = await timedOut;
  t.regex(w.message, /no answer in \d+ ms/);
  t.is(config.get('a'), '1');
  process.kill(engine.proc.pid, 'SIGCONT');
  const next = nextEvent(config, 'change');
  await kv.put('frozen/app/a', '2');
  t.is((await next).newValue, '2');
});

test('Consul down at start with a snapshot: start succeeds from it, and catches up when Consul returns', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  const dir = await tempDir(t);
  const snapshot = join(dir, 'config.snapshot.json');
  await kv.txn([{ set: 'snap/app/a', value: '1' }, { set: 'snap/app/app.yaml', value: 'db: { url: x }\n' }, { set: 'snap/base/region', value: 'eu' }]);
  const prefixes = ['snap/base/', 'snap/app/'];
  const first = await ConfigClient.start({ prefixes, consul: { addr: engine.addr }, snapshot, logger: captureLogs('error').logger });
  await until('the snapshot file', () => readFile(snapshot, 'utf8').then((s) => s.includes('app.yaml'), () => false));
  await first.close();

  await engine.kill();
  const logs = captureLogs('info');
  const config = await ConfigClient.start({ prefixes, consul: { addr: engine.addr }, snapshot, retry: fastRetry, logger: logs.logger });
  t.teardown(() => config.close());
  t.is(config.source, 'snapshot');
  t.is(config.get('a'), '1');
  t.is(config.get('db/url'), 'x');
  t.is(config.get('region'), 'eu');
  t.true(logs.lines().some((l) => l.level === 'warn' && String(l.msg).includes('snapshot')), 'the start from the snapshot is logged');
  const sources: string[] = [];
  config.on('source', (s) => sources.push(`${s.previous}->${s.source}`));

  await engine.restart();
  await kv.txn([{ set: 'snap/app/a', value: '2' }, { set: 'snap/app/app.yaml', value: 'db: { url: x }\n' }, { set: 'snap/base/region', value: 'eu' }]);
  await until('the client to follow Consul again', () => config.source === 'consul' && config.get('a') === '2');
  t.deepEqual(sources, ['snapshot->consul']);
  t.is(config.get('db/url'), 'x');
  await until('the snapshot to hold the new value', () => readFile(snapshot, 'utf8').then((s) => (JSON.parse(s) as { prefixes: Record<string, string[][]> }).prefixes['snap/app/']!.some(([k, v]) => k === 'a' && v === '2')));
});

test('a corrupt snapshot is ignored with a clear warning, never a crash; with Consul up it is replaced', async (t) => {
  const engine = await consul();
  const kv = kvClient(() => engine.addr);
  const dir = await tempDir(t);
  await kv.put('corrupt/app/a', '1');
  const cases: Array<[string, string]> = [
    ['garbage', '\u0000\u0001 not json at all'],
    ['truncated', '{"version":1,"savedAt":"x","prefixes":{"corrupt/app/":[["a","1"'],
    ['wrong shape', '{"version":1,"prefixes":{"corrupt/app/":[["a",1]]}}'],
    ['other version', '{"version":99,"prefixes":{}}'],
  ];
  for (const [name, text] of cases) {
    const snapshot = join(dir, `${name.replace(' ', '-')}.json`);
    await writeFile(snapshot, text);
    const logs = captureLogs('warn');
    const config = await ConfigClient.start({ prefixes: ['corrupt/app/'], consul: { addr: engine.addr }, snapshot, logger: logs.logger });
    t.is(config.get('a'), '1', name);
    t.is(config.source, 'consul');
    await until(`${name}: the snapshot rewritten`, () => readFile(snapshot, 'utf8').then((s) => s.startsWith('{"version":1') && s.includes('"a","1"')));
    await config.close();
    const warning = logs.lines().find((l) => l.code === 'E_SNAPSHOT_CORRUPT');
    t.truthy(warning, `${name}: warned`);
    t.true(String(warning?.msg).includes(snapshot) && /corrupt/.test(String(warning?.msg)), `${name}: the warning names the file: ${String(warning?.msg)}`);
  }

  // Consul down too: the start fails, and says why for both
  const down = `http://127.0.0.1:${REFUSED_PORT}`;
  const snapshot = join(dir, 'down.json');
  await writeFile(snapshot, '{"version":1,');
  const err = await t.throwsAsync(ConfigClient.start({ prefixes: ['corrupt/app/'], consul: { addr: down }, snapshot, startTimeout: '500ms', retry: fastRetry, logger: captureLogs('fatal').logger }));
  t.is((err as { code?: string }).code, 'E_CONFIG_START');
  t.regex(err.message, /corrupt/);
  t.true(err.message.includes(snapshot));
  t.true(err.message.includes(down));
});

test('no Consul and no snapshot: start rejects after startTimeout saying what it tried; failFast false starts empty and fills in later', async (t) => {
  const addr = `http://127.0.0.1:${REFUSED_PORT}`;
  // long enough for the first refused connection to be recorded on a loaded machine
  const err = await t.throwsAsync(ConfigClient.start({ prefixes: ['nothing/app', 'nothing/base'], consul: { addr }, startTimeout: '2s', retry: fastRetry, logger: captureLogs('fatal').logger }));
  t.is((err as { code?: string }).code, 'E_CONFIG_START');
  t.true(err.message.includes(addr), err.message);
  t.true(err.message.includes('"nothing/app/"') && err.message.includes('"nothing/base/"'), err.message);
  t.regex(err.message, /ECONNREFUSED/);
  t.regex(err.message, /no snapshot configured/);
  t.regex(err.message, /after 2s/);

  const dir = await tempDir(t);
  const missing = join(dir, 'never-written.json');
  const err2 = await t.throwsAsync(ConfigClient.start({ prefixes: ['nothing/app'], consul: { addr }, snapshot: missing, startTimeout: '300ms', logger: captureLogs('fatal').logger }));
  t.true(err2.message.includes(`no snapshot file at ${missing}`), err2.message);

  const engine = await consul();
  const gate = await startGate(engine.httpPort);
  t.teardown(() => gate.close());
  gate.shut();
  const config = await ConfigClient.start({ prefixes: ['late/app'], consul: { addr: gate.addr }, failFast: false, startTimeout: '3s', retry: fastRetry, logger: captureLogs('fatal').logger });
  t.teardown(() => config.close());
  t.is(config.source, 'none');
  t.is(config.size, 0);
  t.is(config.getString('a', 'default'), 'default');
  t.regex(config.status()[0]!.error ?? '', /late|socket|ECONNRESET|hang up/i);
  await kvClient(() => engine.addr).put('late/app/a', 'filled');
  const added = nextEvent(config, 'change');
  gate.open();
  t.deepEqual(await added, { key: 'a', oldValue: undefined, newValue: 'filled', type: 'added' });
  t.is(config.source, 'consul');
});

test('ACL token: read with it; a bad token is refused (403) and no token is ever in a log line or an error', async (t) => {
  const secret = 'e95b599e-166e-7d80-08ad-aee76e7ddf19';
  const engine = await consul(`acl { enabled = true default_policy = "deny" tokens { initial_management = "${secret}" agent = "${secret}" } }`);
  const kv = kvClient(() => engine.addr, secret);
  await kv.put('acl/app/a', '1');
  const logs = captureLogs('debug');
  const config = await ConfigClient.start({ prefixes: ['acl/app'], consul: { addr: engine.addr, token: secret }, logger: logs.logger });
  t.teardown(() => config.close());
  t.is(config.get('a'), '1');
  const next = nextEvent(config, 'change');
  await kv.put('acl/app/a', '2');
  t.is((await next).newValue, '2');

  // a token that may read only part of the prefix: Consul filters the answer, the client says so
  const acl = async (path: string, body: unknown): Promise<{ SecretID?: string }> => {
    const res = await fetch(`${engine.addr}${path}`, { method: 'PUT', headers: { 'x-consul-token': secret }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { SecretID?: string };
  };
  await kv.put('acl/app/public/b', 'visible');
  await acl('/v1/acl/policy', { Name: 'public-only', Rules: 'key_prefix "acl/app/public/" { policy = "read" }' });
  const limited = (await acl('/v1/acl/token', { Policies: [{ Name: 'public-only' }] })).SecretID!;
  const partial = await ConfigClient.start({ prefixes: ['acl/app'], consul: { addr: engine.addr, token: limited }, logger: logs.logger });
  t.teardown(() => partial.close());
  t.deepEqual(partial.keys(), ['public/b']);
  t.true(logs.lines().some((l) => l.code === 'E_ACL_FILTERED' && String(l.msg).includes('"acl/app/"')), 'keys hidden by the ACL are reported');
  t.false(logs.text().includes(limited));

  const badToken = '11111111-2222-3333-4444-555555555555';
  const err = await t.throwsAsync(ConfigClient.start({ prefixes: ['acl/app'], consul: { addr: engine.addr, token: badToken }, startTimeout: '3s', retry: fastRetry, logger: logs.logger }));
  t.regex(err.message, /403/);
  t.false(err.message.includes(badToken));
  t.false(logs.text().includes(secret));
  t.false(logs.text().includes(badToken));
  t.true(logs.text().includes('403'), 'the refusal is logged');
});

test('TLS: the client verifies Consul with the CA file and reads over https', async (t) => {
  const dir = await tempDir(t);
  const bin = consulBin();
  execFileSync(bin, ['tls', 'ca', 'create'], { cwd: dir, stdio: 'ignore' });
  execFileSync(bin, ['tls', 'cert', 'create', '-server', '-dc', 'dc1', '-additional-ipaddress', '127.0.0.1'], { cwd: dir, stdio: 'ignore' });
  const [httpsPort] = await freePorts(1);
  const hcl = `ports { https = ${httpsPort} } tls { defaults { ca_file = "${join(dir, 'consul-agent-ca.pem')}" cert_file = "${join(dir, 'dc1-server-consul-0.pem')}" key_file = "${join(dir, 'dc1-server-consul-0-key.pem')}" verify_incoming = false } }`;
  const engine = await consul(hcl);
  await kvClient(() => engine.addr).put('tls/app/a', 'secure');
  const config = await ConfigClient.start({ prefixes: ['tls/app'], consul: { addr: `https://127.0.0.1:${httpsPort}`, caFile: join(dir, 'consul-agent-ca.pem') }, logger: captureLogs('error').logger });
  t.teardown(() => config.close());
  t.is(config.get('a'), 'secure');
  const err = await t.throwsAsync(ConfigClient.start({ prefixes: ['tls/app'], consul: { addr: `https://127.0.0.1:${httpsPort}` }, startTimeout: '3s', retry: fastRetry, logger: captureLogs('fatal').logger }));
  t.regex(err.message, /certificate/i, 'without the CA, the certificate is not trusted');
});
