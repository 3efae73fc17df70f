import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { UsageError } from '@gantry/core';
import { BUILTINS, loadConfigFile, parseWait } from '../src/config.ts';
import { gantryArgs } from './helpers.ts';

function withDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('wait min:max as consul-template writes it', (t) => {
  t.deepEqual(parseWait('50ms:1s'), { minMs: 50, maxMs: 1000 });
  t.deepEqual(parseWait('2s'), { minMs: 2000, maxMs: 8000 });
  t.throws(() => parseWait('1s:50ms'), { instanceOf: UsageError, message: /max is shorter than min/ });
  t.throws(() => parseWait('soon'), { instanceOf: UsageError });
  t.throws(() => parseWait('1s:2s:3s'), { instanceOf: UsageError });
});

test('a config file: builtins resolved, relative paths from the file, every option read', (t) => {
  const dir = withDir(t);
  writeFileSync(join(dir, 'own.hbs'), '{{#each services}}{{name}}\n{{/each}}');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({
    settings: { l7Bind: '10.0.0.5:80' },
    templates: [
      { name: 'haproxy', source: 'builtin:haproxy', destination: 'out/haproxy.cfg', perms: '0640', wait: '10ms:100ms', check: ['haproxy', '-c', '-f', '{{path}}'], reload: { master: '/run/m.sock' }, runtime: { socket: '/run/a.sock', stateFile: '/run/s' } },
      { source: 'own.hbs', destination: '/tmp/x/own.txt', reload: { signal: 'HUP', pidFile: '/run/d.pid' }, allowEmpty: true, backup: false, vars: { a: 1 } },
      { source: 'own.hbs', destination: 'cmd.txt', reload: { command: 'true' }, checkTimeout: '3s' },
    ],
  }));
  const c = loadConfigFile(join(dir, 'c.json'), { wait: '50ms:1s' });
  t.deepEqual(c.settings, { l7Bind: '10.0.0.5:80' });
  const [h, own, cmd] = c.templates;
  t.is(h!.source, BUILTINS.haproxy!);
  t.is(h!.destination, join(dir, 'out/haproxy.cfg'));
  t.is(h!.mode, 0o640);
  t.is(h!.waitMinMs, 10);
  t.deepEqual(h!.reload, { master: '/run/m.sock' });
  t.deepEqual(h!.runtime, { socket: '/run/a.sock', stateFile: '/run/s', hostMap: undefined });
  t.is(own!.source, join(dir, 'own.hbs'));
  t.is(own!.name, '/tmp/x/own.txt');
  t.true(own!.allowEmpty);
  t.false(own!.backup);
  t.is(own!.waitMaxMs, 1000);
  t.deepEqual(own!.reload, { signal: 'HUP', pidFile: '/run/d.pid' });
  t.deepEqual(own!.vars, { a: 1 });
  t.deepEqual(cmd!.reload, { command: 'true' });
  t.is(cmd!.checkTimeoutMs, 3000);
});

test('a bad config file is a usage error naming the place', (t) => {
  const dir = withDir(t);
  const bad = (body: unknown): string => { const f = join(dir, `${Math.random()}.json`); writeFileSync(f, typeof body === 'string' ? body : JSON.stringify(body)); return f; };
  t.throws(() => loadConfigFile(bad('{nope'), { wait: '1s' }), { instanceOf: UsageError, message: /config .*\.json: /u });
  t.throws(() => loadConfigFile(bad({ templates: [{ destination: 'x' }] }), { wait: '1s' }), { message: /templates\[0\]\.source is required/ });
  t.throws(() => loadConfigFile(bad({ templates: [{ source: 'builtin:nginx', destination: 'x' }] }), { wait: '1s' }), { message: /unknown builtin template/ });
  t.throws(() => loadConfigFile(bad({ templates: [{ source: 'builtin:hosts', destination: 'x', perms: '999' }] }), { wait: '1s' }), { message: /perms/ });
  t.throws(() => loadConfigFile(bad({ templates: [{ source: 'builtin:hosts', destination: 'x', reload: { sometimes: true } }] }), { wait: '1s' }), { message: /templates\[0\]\.reload/ });
  t.throws(() => loadConfigFile(bad({ templates: [{ source: 'builtin:hosts', destination: 'x', wait: '1s:1ms' }] }), { wait: '1s' }), { message: /templates\[0\]\.wait/ });

  const r = spawnSync(process.execPath, gantryArgs('templater', ['--config', bad({ templates: [{ source: 'missing.hbs', destination: 'x' }] })]), { encoding: 'utf8', timeout: 30_000 });
  t.is(r.status, 2);
  t.regex(r.stderr, /missing\.hbs does not exist/);
  const r2 = spawnSync(process.execPath, gantryArgs('templater', ['--haproxy-cfg', join(dir, 'h.cfg'), '--domain', 'Bad Domain']), { encoding: 'utf8', timeout: 30_000 });
  t.is(r2.status, 2);
  t.regex(r2.stderr, /--domain/);
  const r3 = spawnSync(process.execPath, gantryArgs('templater', []), { encoding: 'utf8', timeout: 30_000 });
  t.is(r3.status, 2);
  t.regex(r3.stderr, /nothing to render/);
});
