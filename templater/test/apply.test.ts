// The apply pipeline and the Runtime API against a real HAProxy (master-worker,
// from the harness): check before replace, confirmed reloads, a refused reload,
// an unreachable master, and instance changes without a reload.
import test from 'ava';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { getPriority } from 'node:os';
import { startHAProxy, type HAProxyEngine } from '../../test/harness/engines/haproxy.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { freePort, sleep } from '../../test/harness/process.ts';
import { applyRender, type ApplyTarget } from '../src/apply/apply.ts';
import { MasterReloader, parseShowProc } from '../src/apply/reload.ts';
import { RuntimeApi, patchServersState } from '../src/runtime/runtime-api.ts';
import { cliRequest } from '../src/runtime/socket.ts';
import { SlotTable } from '../src/runtime/slots.ts';
import type { InstanceView } from '../src/view.ts';
import { renderHostMap } from '../src/runtime/host-map.ts';
import { bootstrapConfig, namedServer, get, type NamedServer } from './helpers.ts';

const track = manageEngines(test);

function config(h: { dir: string }, port: number, body: string): string {
  return `global
    stats socket ${join(h.dir, 'admin.sock')} mode 600 level admin expose-fd listeners
    server-state-file ${join(h.dir, 'server-state')}
    mworker-max-reloads 5
    hard-stop-after 5s

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
    default-server init-addr libc,none

frontend web
    bind 127.0.0.1:${port}
${body}`;
}

async function setup(): Promise<{ h: HAProxyEngine; port: number; target: ApplyTarget }> {
  const h = await startHAProxy({ config: bootstrapConfig });
  track('haproxy', h);
  const target: ApplyTarget = {
    name: 'haproxy', destination: h.cfgFile, mode: 0o640, backup: true,
    check: ['haproxy', '-c', '-f', '{{path}}'], checkTimeoutMs: 10_000,
    reloader: new MasterReloader({ socket: h.masterSocket, timeoutMs: 10_000 }),
  };
  return { h, port: h.httpPort, target };
}

const slot = (name: string, s?: { address: string; port: number }): { name: string; instance: null; address: string | null; port: number | null } =>
  ({ name, instance: null, address: s?.address ?? null, port: s?.port ?? null });

const answer = (text: string): string => `    http-request return status 200 content-type text/plain string ${text}\n`;

test('a render the check refuses is never written; the output names the offending line', async (t) => {
  const { h, port, target } = await setup();
  const good = config(h, port, answer('one'));
  t.is((await applyRender(target, good)).result, 'applied');
  const before = readFileSync(h.cfgFile, 'utf8');
  const reloads = (await h.processes()).reloads;
  const bad = config(h, port, `${answer('two')}    bogus_directive here\n`);
  const out = await applyRender(target, bad);
  t.is(out.result, 'check_failed');
  if (out.result !== 'check_failed') return;
  const lineNo = bad.split('\n').findIndex((l) => l.includes('bogus_directive')) + 1;
  t.deepEqual(out.offending, [`line ${lineNo}: ${bad.split('\n')[lineNo - 1]}`]);
  t.regex(out.output, /bogus_directive/);
  t.true(out.output.includes(h.cfgFile), 'the output names the destination, not the temporary file');
  t.is(readFileSync(h.cfgFile, 'utf8'), before);
  t.is((await h.processes()).reloads, reloads);
  t.is((await get(port, 'x')).body, 'one');
});

test('a write whose check is stopped by its signal (a newer render replaces it) writes nothing and leaves no temporary file', async (t) => {
  const { h, port, target } = await setup();
  const good = config(h, port, answer('one'));
  t.is((await applyRender(target, good)).result, 'applied');
  const before = readFileSync(h.cfgFile, 'utf8');
  // a check that would take 5 s, stopped after 100 ms
  const slow: ApplyTarget = { ...target, check: ['sh', '-c', 'sleep 5; exec haproxy -c -f "$0"', '{{path}}'] };
  const abort = new AbortController();
  const t0 = Date.now();
  setTimeout(() => abort.abort(), 100);
  const out = await applyRender(slow, config(h, port, answer('two')), { noReload: true, signal: abort.signal });
  t.is(out.result, 'aborted');
  t.true(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0} ms`);
  t.is(readFileSync(h.cfgFile, 'utf8'), before);
  t.deepEqual(readdirSync(dirname(h.cfgFile)).filter((f) => f.includes('.tmp')), []);
  t.is((await get(port, 'x')).body, 'one');
});

test('the check of a write the Runtime API already made live (noReload) runs niced; a check on the reload path does not', async (t) => {
  const { h, port, target } = await setup();
  t.is((await applyRender(target, config(h, port, answer('one')))).result, 'applied');
  const seen = join(h.dir, 'niceness');
  // the check records its own niceness (`nice` alone prints it), then checks the file as HAProxy would
  const recording: ApplyTarget = { ...target, check: ['sh', '-c', `nice > ${seen}; exec haproxy -c -q -f "$0"`, '{{path}}'] };
  t.is((await applyRender(recording, config(h, port, answer('two')), { noReload: true })).result, 'written');
  const own = getPriority();
  t.is(Number(readFileSync(seen, 'utf8').trim()), Math.min(19, own + 10), 'background check: 10 nicer');
  t.is((await applyRender(recording, config(h, port, answer('three')))).result, 'applied');
  t.is(Number(readFileSync(seen, 'utf8').trim()), own, 'reload path: at the templater\'s own priority');
  t.is((await get(port, 'x')).body, 'three');
});

test('the check runs with glibc\'s malloc on huge pages unless the templater\'s environment sets GLIBC_TUNABLES', async (t) => {
  const { h, port, target } = await setup();
  const seen = join(h.dir, 'tunables');
  const recording: ApplyTarget = { ...target, check: ['sh', '-c', `printf %s "$GLIBC_TUNABLES" > ${seen}; exec haproxy -c -q -f "$0"`, '{{path}}'] };
  const own = process.env.GLIBC_TUNABLES;
  try {
    delete process.env.GLIBC_TUNABLES;
    t.is((await applyRender(recording, config(h, port, answer('one')))).result, 'applied');
    t.is(readFileSync(seen, 'utf8'), 'glibc.malloc.hugetlb=1');
    process.env.GLIBC_TUNABLES = 'glibc.malloc.hugetlb=0';
    t.is((await applyRender(recording, config(h, port, answer('two')))).result, 'applied');
    t.is(readFileSync(seen, 'utf8'), 'glibc.malloc.hugetlb=0', 'the operator\'s own setting is kept as it is');
  } finally {
    if (own === undefined) delete process.env.GLIBC_TUNABLES; else process.env.GLIBC_TUNABLES = own;
  }
  t.is((await get(port, 'x')).body, 'two');
});

test('a good render is written atomically with its permissions, the last good file kept, and the reload confirmed by show proc', async (t) => {
  const { h, port, target } = await setup();
  const first = config(h, port, answer('one'));
  const before = await h.processes();
  t.is((await applyRender(target, first)).result, 'applied');
  const mid = await h.processes();
  t.is(mid.reloads, before.reloads + 1);
  t.notDeepEqual(mid.workers, before.workers);
  t.is((await get(port, 'x')).body, 'one');
  t.is((await applyRender(target, config(h, port, answer('two')))).result, 'applied');
  t.is((await get(port, 'x')).body, 'two');
  t.is(readFileSync(`${h.cfgFile}.bak`, 'utf8'), first);
  const { statSync } = await import('node:fs');
  t.is(statSync(h.cfgFile).mode & 0o777, 0o640);
  // the same content again: nothing happens
  t.is((await applyRender(target, config(h, port, answer('two')))).result, 'unchanged');
  t.is((await h.processes()).reloads, mid.reloads + 1);
});

test('a config HAProxy refuses at reload (it passed the check): old workers keep serving, the last good file is put back', async (t) => {
  const { h, port, target } = await setup();
  const good = config(h, port, answer('good'));
  t.is((await applyRender(target, good)).result, 'applied');
  const workers = (await h.processes()).workers;
  // 192.0.2.0/24 is TEST-NET-1: not on this host, so the bind fails only when the new workers start
  const bad = config(h, port, answer('bad')).replace(`bind 127.0.0.1:${port}`, `bind 127.0.0.1:${port}\n    bind 192.0.2.77:${await freePort()}`);
  const out = await applyRender(target, bad);
  t.is(out.result, 'reload_failed');
  if (out.result === 'reload_failed') {
    t.is(out.reason, 'rejected');
    t.true(out.restored);
  }
  t.is(readFileSync(h.cfgFile, 'utf8'), good);
  t.deepEqual((await h.processes()).workers, workers);
  t.is((await get(port, 'x')).body, 'good');
  // and it recovers with the next good render
  t.is((await applyRender(target, config(h, port, answer('again')))).result, 'applied');
  t.is((await get(port, 'x')).body, 'again');
});

test('an HAProxy that does not answer: the checked file stays in place and the reload is pending', async (t) => {
  const { h, port, target } = await setup();
  t.is((await applyRender(target, config(h, port, answer('one')))).result, 'applied');
  await h.kill();
  const next = config(h, port, answer('two'));
  const out = await applyRender(target, next);
  t.is(out.result, 'reload_pending');
  t.is(readFileSync(h.cfgFile, 'utf8'), next);
  t.false((await target.reloader!.probe()).up);
});

test('a server-state text patched for some backends: their lines replaced, the others kept; another version or header: undefined', (t) => {
  const head = '1\n# be_id be_name srv_id srv_name srv_addr\n';
  const base = `${head}3 be1 1 s1 10.0.0.1\n4 be2 1 s1 10.0.0.2\n4 be2 2 s2 10.0.0.3\n5 be3 1 s1 10.0.0.4\n\n`;
  const fresh = `${head}4 be2 1 s1 10.0.0.9\n4 be2 2 s2 10.0.0.3\n\n`;
  t.is(patchServersState(base, fresh, new Set(['be2'])), `${head}3 be1 1 s1 10.0.0.1\n5 be3 1 s1 10.0.0.4\n4 be2 1 s1 10.0.0.9\n4 be2 2 s2 10.0.0.3\n`);
  t.is(patchServersState(base, fresh.replace('srv_addr', 'srv_addr srv_port'), new Set(['be2'])), undefined);
  t.is(patchServersState(base, fresh.replace(/^1\n/, '2\n'), new Set(['be2'])), undefined);
  t.is(patchServersState(base, fresh, new Set(['be3'])), undefined, 'an answer for a backend not asked for');
});

test('show proc of HAProxy 2.6 is parsed, failed reloads included', (t) => {
  const p = parseShowProc(`#<PID>          <type>          <reloads>       <uptime>        <version>
9404            master          2 [failed: 1]   0d00h00m06s     2.6.12
# workers
9416            worker          1               0d00h00m05s     2.6.12
# old workers
9400            worker          3               0d00h01m05s     2.6.12
# programs
`);
  t.deepEqual(p, { masterPid: 9404, reloads: 2, failed: 1, workers: [9416], oldWorkers: [9400] });
  t.throws(() => parseShowProc('Unknown command'), { code: 'E_HAPROXY_COMMAND' });
});

test('Runtime API: fill, empty and add server slots without a reload; the server state file follows', async (t) => {
  const { h, port, target } = await setup();
  const a = await namedServer('a');
  const b = await namedServer('b');
  const c = await namedServer('c');
  t.teardown(async () => { await a.close(); await b.close(); await c.close(); });
  const cfg = config(h, port, '    default_backend be\n\nbackend be\n    balance roundrobin\n    server s1 127.0.0.1:1 disabled\n    server s2 127.0.0.1:1 disabled\n');
  t.is((await applyRender(target, cfg)).result, 'applied');
  const reloads = (await h.processes()).reloads;
  const stateFile = join(h.dir, 'server-state');
  const rt = new RuntimeApi({ socket: h.adminSocket, stateFile });
  t.false(await rt.stateSaved(), 'nothing written yet');

  const r1 = await rt.apply([{ backend: 'be', slots: [slot('s1'), slot('s2', a)] }]);
  t.true(r1.commands > 0);
  t.is((await get(port, 'x')).body, 'a');
  // the state file is written off the change's path; stateSaved waits for the write under way
  t.true(await rt.stateSaved());
  t.regex(readFileSync(stateFile, 'utf8'), new RegExp(`be 2 s2 127\\.0\\.0\\.1 2 \\d+ .* ${a.port} `));

  // the same again: nothing to do, nothing sent, the file still current
  t.is((await rt.apply([{ backend: 'be', slots: [slot('s1'), slot('s2', a)] }])).commands, 0);
  t.true(await rt.stateSaved());
  rt.forgetState();
  t.false(await rt.stateSaved(), 'HAProxy restarted: unknown until written again');
  await rt.saveState();
  t.true(await rt.stateSaved());

  // a replaces... b in s1, a leaves, c needs a third slot the process does not have
  await rt.apply([{ backend: 'be', slots: [slot('s1', b), slot('s2'), slot('s3', c)] }]);
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) seen.add((await get(port, 'x')).body);
  t.deepEqual([...seen].sort(), ['b', 'c']);
  t.is((await h.processes()).reloads, reloads, 'no reload');

  // a reload restores servers from the state file; apply() after it leaves them as the view says
  writeFileSync(h.cfgFile, cfg.replace('server s2 127.0.0.1:1 disabled', 'server s2 127.0.0.1:1 disabled\n    server s3 127.0.0.1:1 disabled'));
  t.true(await h.reload());
  await rt.apply([{ backend: 'be', slots: [slot('s1', b), slot('s2'), slot('s3', c)] }]);
  const after = new Set<string>();
  for (let i = 0; i < 10; i++) after.add((await get(port, 'x')).body);
  t.deepEqual([...after].sort(), ['b', 'c']);
  t.true(existsSync(stateFile));
});

test('before a reload, only the changed backends\' lines of a current state file are read again; the file equals a full dump, and a reload from it keeps the new addresses', async (t) => {
  const { h, port, target } = await setup();
  const a = await namedServer('a');
  const b = await namedServer('b');
  const c = await namedServer('c');
  t.teardown(async () => { await a.close(); await b.close(); await c.close(); });
  const backends = ['be1', 'be2', 'be3'];
  const body = (hosts: string): string => `${hosts}\n${backends.map((be) => `backend ${be}\n    balance roundrobin\n    server s1 127.0.0.1:1 disabled\n    server s2 127.0.0.1:1 disabled\n`).join('\n')}`;
  const routes = backends.map((be) => `    use_backend ${be} if { path_beg /${be} }`).join('\n');
  const cfg = config(h, port, body(routes));
  t.is((await applyRender(target, cfg)).result, 'applied');
  const stateFile = join(h.dir, 'server-state');
  const rt = new RuntimeApi({ socket: h.adminSocket, stateFile });
  const desired = (be2: { address: string; port: number }): Array<{ backend: string; slots: ReturnType<typeof slot>[] }> =>
    [{ backend: 'be1', slots: [slot('s1', a), slot('s2')] }, { backend: 'be2', slots: [slot('s1', be2), slot('s2')] }, { backend: 'be3', slots: [slot('s1', c), slot('s2')] }];
  // not current yet: the whole dump
  t.is(await rt.applyAndSave(desired(b), new Set(backends)), 'dump');
  t.true(await rt.stateSaved());
  // current: be2 moves to a's server; only be2 is read again
  const before = readFileSync(stateFile, 'utf8');
  t.is(await rt.applyAndSave(desired(a), new Set(['be2'])), 'patched');
  t.true(await rt.stateSaved());
  const patched = readFileSync(stateFile, 'utf8');
  t.not(patched, before);
  // the same servers, the same fields (the seconds since the last change aside) as HAProxy's own dump
  const rows = (text: string): string[] => text.split('\n').filter((l) => l.trim() && !l.startsWith('#') && l.includes(' ')).map((l) => l.split(' ').filter((_, i) => i !== 9).join(' ')).sort();
  t.deepEqual(rows(patched), rows(await h.runtime('show servers state')));
  t.regex(patched, new RegExp(`be2 1 s1 127\\.0\\.0\\.1 2 \\d+ .* ${a.port} `));
  // a reload (a route added) starts from that file: be2 answers from a, no sync needed
  t.is((await applyRender(target, config(h, port, body(`${routes}\n    http-request set-header x-reloaded 1`)))).result, 'applied');
  t.is((await get(port, 'x', '/be2')).body, 'a');
  t.is((await get(port, 'x', '/be3')).body, 'c');
});

test('Runtime API: an instance replaced by another in one change, or moved to a new address, gets no request after it, with requests in flight at the change (slots from the SlotTable: a freed one is not reused at once)', async (t) => {
  const { h, port, target } = await setup();
  const servers = await Promise.all(['a', 'b', 'c'].map((n) => namedServer(n)));
  t.teardown(async () => { for (const s of servers) await s.close(); });
  const [a, b, c] = servers as [NamedServer, NamedServer, NamedServer];
  // the shipped template's defaults that touch server connections (L7 retries, keep-alive)
  const cfg = config(h, port, '    default_backend be\n\nbackend be\n    balance roundrobin\n    server s1 127.0.0.1:1 disabled\n    server s2 127.0.0.1:1 disabled\n')
    .replace('    mode http\n', '    mode http\n    option forwardfor\n    option idle-close-on-response\n    option redispatch 1\n    retries 2\n    retry-on conn-failure empty-response response-timeout\n    timeout http-keep-alive 10s\n');
  t.is((await applyRender(target, cfg)).result, 'applied');
  const rt = new RuntimeApi({ socket: h.adminSocket, stateFile: join(h.dir, 'server-state') });
  const table = new SlotTable(2);
  const instance = (s: NamedServer): InstanceView => ({ key: `n/${s.name}`, id: s.name, node: 'n', address: '127.0.0.1', port: s.port, status: 'passing', tags: [], meta: {}, tenant: null });
  await rt.apply([{ backend: 'be', slots: table.assign('be', [instance(a), instance(c)]) }]);
  // keep-alive connections to a (namedServer keeps them 60 s): HAProxy holds idle ones to reuse
  for (let i = 0; i < 20; i++) await get(port, 'x');
  t.true(a.hits > 0);
  // a leaves and b comes in one change, while requests are in flight: HAProxy 2.6 puts a connection
  // busy at an address change back in the server's idle pool, and later requests reuse it (with a's
  // slot handed straight to b, a kept getting requests); a's slot goes to maintenance instead
  let busy = true;
  const load = Promise.all([1, 2, 3, 4].map(async () => { while (busy) await get(port, 'x').catch(() => undefined); }));
  await sleep(100);
  const slots = table.assign('be', [instance(b), instance(c)]);
  try {
    await rt.apply([{ backend: 'be', slots }]);
    await sleep(100);
  } finally {
    busy = false;
    await load;
  }
  t.deepEqual(slots.map((s) => s.instance?.id ?? null), [null, 'c', 'b', null]);
  const hitsA = a.hits;
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) seen.add((await get(port, 'x')).body);
  t.deepEqual([...seen].sort(), ['b', 'c']);
  t.is(a.hits, hitsA, 'no request reaches a after it left');

  // the same instance (same key) at a new address, requests in flight: it takes another slot too
  const d = await namedServer('d');
  t.teardown(() => d.close());
  busy = true;
  const load2 = Promise.all([1, 2, 3, 4].map(async () => { while (busy) await get(port, 'x').catch(() => undefined); }));
  await sleep(100);
  const moved = table.assign('be', [{ ...instance(b), port: d.port }, instance(c)]);
  try {
    await rt.apply([{ backend: 'be', slots: moved }]);
    await sleep(100);
  } finally {
    busy = false;
    await load2;
  }
  t.deepEqual(moved.map((s) => s.port), [null, c.port, null, d.port], 'b\'s old slot (s3) is left empty; the never-used s4 takes it');
  const hitsB = b.hits;
  const seen2 = new Set<string>();
  for (let i = 0; i < 40; i++) seen2.add((await get(port, 'x')).body);
  t.deepEqual([...seen2].sort(), ['c', 'd']);
  t.is(b.hits, hitsB, 'no request reaches the old address');
});

test('Runtime API host map: a new name routed to a spare backend without a reload, changed and deleted; the map file keeps what a reload loads', async (t) => {
  const { h, port, target } = await setup();
  const a = await namedServer('a');
  const b = await namedServer('b');
  t.teardown(async () => { await a.close(); await b.close(); });
  const mapFile = join(h.dir, 'hosts.map');
  writeFileSync(mapFile, renderHostMap([{ host: 'a.test', backend: 'be_a' }]));
  const cfg = config(h, port, `    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    use_backend %[var(txn.host),map(${mapFile},gantry_no_route)]
    default_backend gantry_no_route

backend gantry_no_route
    http-request return status 404 content-type text/plain string none

backend be_a
    server s1 127.0.0.1:${a.port}

backend gantry_spare_1
    server s1 127.0.0.1:1 disabled
    server s2 127.0.0.1:1 disabled
`);
  t.is((await applyRender(target, cfg)).result, 'applied');
  const before = await h.processes();
  t.is((await get(port, 'a.test')).body, 'a');
  t.is((await get(port, 'b.test')).status, 404);
  const rt = new RuntimeApi({ socket: h.adminSocket });
  // b goes live in the spare: servers first, then its names in the map
  await rt.apply([{ backend: 'gantry_spare_1', slots: [slot('s1', b), slot('s2')] }]);
  const routes = [{ host: 'a.test', backend: 'be_a' }, { host: 'b.test', backend: 'gantry_spare_1' }, { host: 'b2.test', backend: 'gantry_spare_1' }];
  t.is((await rt.applyHostMap(mapFile, routes)).commands, 2);
  t.is((await get(port, 'b.test')).body, 'b');
  t.is((await get(port, 'B2.test:80')).body, 'b');
  t.is((await rt.applyHostMap(mapFile, routes)).commands, 0, 'level-triggered: nothing to do the second time');
  // a name moves, another goes
  t.is((await rt.applyHostMap(mapFile, [{ host: 'a.test', backend: 'be_a' }, { host: 'b.test', backend: 'be_a' }])).commands, 2);
  t.is((await get(port, 'b.test')).body, 'a');
  t.is((await get(port, 'b2.test')).status, 404);
  const after = await h.processes();
  t.is(after.reloads, before.reloads, 'no reload');
  t.deepEqual(after.workers, before.workers, 'the same worker served it all');
  // what it applied is known: trusting it, the map is not read again and only the difference is sent
  const three = [{ host: 'a.test', backend: 'be_a' }, { host: 'b.test', backend: 'be_a' }, { host: 'c.test', backend: 'gantry_spare_1' }];
  t.is((await rt.applyHostMap(mapFile, three, true)).commands, 1);
  t.is((await get(port, 'c.test')).body, 'b');
  // a name deleted behind its back is not seen while it trusts what it knows (no read) ...
  t.is((await cliRequest(h.adminSocket, `del map ${mapFile} c.test`)).trim(), '');
  t.is((await get(port, 'c.test')).status, 404);
  t.is((await rt.applyHostMap(mapFile, three, true)).commands, 0, 'trusted: no read, no command');
  // ... a read brings the map level again: untrusted (every sync), or after forgetState
  rt.forgetState();
  t.is((await rt.applyHostMap(mapFile, three, true)).commands, 1);
  t.is((await get(port, 'c.test')).body, 'b');
  t.is((await cliRequest(h.adminSocket, `del map ${mapFile} c.test`)).trim(), '');
  t.is((await rt.applyHostMap(mapFile, three)).commands, 1, 'untrusted: read, the missing name added');
  t.is((await get(port, 'c.test')).body, 'b');
  // a map HAProxy does not run is an error, not a silent success
  await t.throwsAsync(rt.applyHostMap(join(h.dir, 'other.map'), routes), { code: 'E_HAPROXY_COMMAND' });
  await t.throwsAsync(rt.applyHostMap(join(h.dir, 'other.map'), routes, true), { code: 'E_HAPROXY_COMMAND' }, 'unknown map: read, even trusted');
});

test('HAProxy restores server ports from the state file over the config: a reload without a sync leaves a slot on a stale port', async (t) => {
  // the fact the runner's reload path is built on (HAProxy 2.6): the state file's port wins over
  // the config's for a server of the same name, so servers are brought to the view and the state
  // saved before a reload, and every backend is synced after it
  const { h, port, target } = await setup();
  const a = await namedServer('a');
  const b = await namedServer('b');
  t.teardown(async () => { await a.close(); await b.close(); });
  const stateFile = join(h.dir, 'server-state');
  const cfg = (p: number): string => config(h, port, `    default_backend be\n\nbackend be\n    server s1 127.0.0.1:${p}\n`);
  t.is((await applyRender(target, cfg(a.port))).result, 'applied');
  const rt = new RuntimeApi({ socket: h.adminSocket, stateFile });
  await rt.saveState();
  // the config moves s1 to b; the state file still says a's port
  t.is((await applyRender(target, cfg(b.port))).result, 'applied');
  const stale = (await rt.serversState()).servers.get('be')!.get('s1')!;
  t.is(stale.port, a.port, 'the state file won: stale port after the reload');
  // the full sync after the reload puts it right
  await rt.apply([{ backend: 'be', slots: [{ name: 's1', instance: null, address: '127.0.0.1', port: b.port }] }]);
  t.is((await get(port, 'x')).body, 'b');
  // saved before the reload (what the runner does), the next reload starts right
  await rt.saveState();
  t.is((await applyRender(target, `${cfg(b.port)}\n`)).result, 'applied');
  t.is((await rt.serversState()).servers.get('be')!.get('s1')!.port, b.port);
});
