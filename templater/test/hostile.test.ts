// Hostile names, tags, meta and addresses written straight into Consul (no
// registrator to clean them): every shipped template is rendered with them,
// nothing of them reaches haproxy.cfg or the hosts file unescaped, the check
// never fails because of them, and a template printing one raw is an error,
// not an injection.
import test from 'ava';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { manageEngines } from '../../test/harness/ava.ts';
import { waitUntil } from '../../test/harness/process.ts';
import { register, namedServer, get } from './helpers.ts';
import { startStack } from './stack.ts';

const track = manageEngines(test);

const KEYWORDS = new Set(['global', 'log', 'master-worker', 'mworker-max-reloads', 'hard-stop-after', 'maxconn', 'stats', 'server-state-file', 'defaults', 'mode',
  'option', 'retries', 'retry-on', 'timeout', 'load-server-state-from-file', 'default-server', 'frontend', 'bind', 'http-request', 'acl', 'use_backend', 'default_backend',
  'backend', 'balance', 'server', 'listen']);
const TEN_K = `k${'x'.repeat(10 * 1024)}`;
const HOSTILE = [
  'evil\nserver pwn 6.6.6.6:80',
  'line\r\nbreak',
  'sp ace',
  'ha#sh',
  'q"uo\'te',
  '{{constructor}}',
  '{{{raw}}}',
  '$(reboot)',
  '%[src]',
  'back\\slash',
  'nul\u0000byte',
  'uni\u2028code',
  TEN_K,
];
/** fragments that must never appear in a rendered file, escaped or not */
const FORBIDDEN = ['server pwn', 'pwn 6', '6.6.6.6:80', '\u0000', '\u2028', '\r', 'x'.repeat(200)];

/**
 * Reads a config line the way HAProxy does (quotes, backslash escapes, comments)
 * and says what is wrong with it: an unquoted '#' after the first word (a comment
 * eating the rest), a '$' HAProxy would expand in double quotes, an unclosed quote.
 */
function lineProblem(line: string): string | undefined {
  let q: '"' | "'" | null = null;
  let sawWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\') { i++; continue; }
    if (q) { if (c === q) q = null; else if (q === '"' && c === '$') return 'unescaped $ in double quotes'; continue; }
    if (c === '"' || c === "'") { q = c; continue; }
    if (c === '#') return sawWord ? 'a # cuts the line' : undefined;
    if (c !== ' ' && c !== '\t') sawWord = true;
  }
  return q ? 'unclosed quote' : undefined;
}

test('hostile names, tags, meta and addresses: every shipped template renders, passes the check, and carries nothing raw', async (t) => {
  const st = await startStack(t, track, [], { startTemplater: false });
  const web = await namedServer('web');
  t.teardown(() => web.close());
  // a control service, and the hostile ones, each with a reachable instance
  await register(st.consul.addr, { id: 'orders-1', name: 'orders', port: web.port, check: 'passing' });
  for (const [i, h] of HOSTILE.entries()) {
    await register(st.consul.addr, {
      id: `hostile-${i}`, name: h, port: web.port, check: 'passing',
      tags: [h, `gantry.host=${h}`, `gantry.path=/${h}`, `gantry.tenant=${h}`, ...(i % 3 === 0 ? [`gantry.tcp=${h}`] : [])],
      meta: { 'gantry-tenant': h.slice(0, 500), note: h.slice(0, 500) },
    });
    await register(st.consul.addr, { id: `hostile-tcp-${i}`, name: `tcp${i}`, port: web.port, check: 'passing', tags: ['gantry.tcp=7000', `gantry.tenant=${h}`] });
    await register(st.consul.addr, { id: `hostile-addr-${i}`, name: 'orders', address: h, port: 80, check: 'passing' });
  }
  // a user template that prints a name raw: refused at render, nothing written
  const raw = join(st.dir, 'raw.hbs');
  writeFileSync(raw, '{{#each services}}{{name}}\n{{/each}}');
  const { startTemplater } = await import('./helpers.ts');
  const tp = startTemplater(st.dir, [...st.args, '--template', `${raw}:${join(st.dir, 'raw.out')}`]);
  track('templater', tp);

  await waitUntil('orders served', async () => (await get(st.haproxy.httpPort, 'orders.gantry.test')).status === 200, { timeoutMs: 30_000 });
  await waitUntil('hosts written', async () => readFileSync(st.hostsFile, 'utf8').includes('orders.gantry.test'), { timeoutMs: 30_000 });
  const cfg = readFileSync(st.haproxy.cfgFile, 'utf8');
  const hosts = readFileSync(st.hostsFile, 'utf8');
  t.is(await tp.metric('gantry_templater_check_failures_total'), 0);
  t.is(await tp.metric('gantry_templater_renders_total', { template: 'haproxy', result: 'applied' }), 1);

  for (const f of FORBIDDEN) {
    t.false(cfg.includes(f), `haproxy.cfg contains ${JSON.stringify(f)}`);
    t.false(hosts.includes(f), `hosts contains ${JSON.stringify(f)}`);
  }
  for (const line of cfg.split('\n')) {
    t.is(lineProblem(line), undefined, line);
    t.true(line.length < 2048, `long line ${line.slice(0, 80)}`);
    t.notRegex(line, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/);
  }
  // every line is a directive of the template (no line added by a value)
  const firstWords = new Set(cfg.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((w) => w && !w.startsWith('#')));
  t.deepEqual([...firstWords].filter((w) => !KEYWORDS.has(w!)), []);
  // the hosts file: an address and DNS names, nothing else
  for (const line of hosts.split('\n').filter((l) => l && !l.startsWith('#'))) t.regex(line, /^\d+\.\d+\.\d+\.\d+( [a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)+$/);
  // what could be escaped is served under its escaped name (tenant from its own tag), what could not was left out
  t.is((await get(st.haproxy.httpPort, 'evil-server-pwn-6-6-6-6-80-evil-server-pwn-6-6-6-6-80.gantry.test')).body, 'web');
  t.is((await get(st.haproxy.httpPort, 'sp-ace-sp-ace.gantry.test')).body, 'web');
  t.regex(hosts, /^127\.\d+\.\d+\.\d+ \S*tcp0\.gantry\.test/m);
  t.true(await tp.metric('gantry_templater_skipped_total') > 0);
  // the check agrees, run again on the file as written
  const check = spawnSync('haproxy', ['-c', '-f', st.haproxy.cfgFile], { encoding: 'utf8' });
  t.is(check.status, 0, check.stderr);
  // the raw template: a render error naming the file and place, and no file
  const err = await tp.waitForLog('raw refused', (l) => l.template === join(st.dir, 'raw.out') && String(l.msg).startsWith('render failed'));
  t.regex(String(err.err), /raw\.hbs:1:\d+: value .* cannot be written as it is/);
  t.false(existsSync(join(st.dir, 'raw.out')));
});
