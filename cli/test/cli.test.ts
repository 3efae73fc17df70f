// The gantry CLI as a user runs it: a bad flag or value exits 2 naming it.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../test/harness/bins.ts';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';

const track = manageEngines(test);
const gantry = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [join(repoRoot, 'cli', 'bin', 'gantry.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });

test('no command or an unknown one: usage and exit 2', (t) => {
  const none = gantry([]);
  t.is(none.status, 2);
  t.regex(none.stdout, /Usage: gantry <command>/);
  const unknown = gantry(['frobnicate']);
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /unknown command "frobnicate"/);
});

test('unknown flag, bad duration, bad URL: exit 2 naming the flag and the value', (t) => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['doctor', '--bogus'], {}, /unknown flag "--bogus"/],
    [['doctor', '--timeout', '5 seconds'], {}, /flag --timeout: invalid value "5 seconds": expected a duration/],
    [['doctor', '--consul-addr', '::nope'], {}, /flag --consul-addr: invalid value "::nope"/],
    [['doctor'], { CONSUL_HTTP_ADDR: 'gopher://x' }, /environment variable CONSUL_HTTP_ADDR \(flag --consul-addr\)/],
  ];
  for (const [args, env, re] of cases) {
    const r = gantry(args, env);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, re);
  }
});

test('--help lists every flag with its environment twin', (t) => {
  const r = gantry(['doctor', '--help']);
  t.is(r.status, 0);
  for (const env of ['CONSUL_HTTP_ADDR', 'CONSUL_HTTP_TOKEN', 'CONSUL_HTTP_TOKEN_FILE', 'CONSUL_CACERT', 'CONSUL_CLIENT_CERT', 'CONSUL_CLIENT_KEY', 'GANTRY_TIMEOUT']) {
    t.true(r.stdout.includes(`env: ${env}`), env);
  }
});

test('doctor: ok against a real Consul, exit 1 naming the address when none answers', async (t) => {
  const consul = await startConsul();
  track('consul', consul);
  const ok = gantry(['doctor'], { CONSUL_HTTP_ADDR: consul.addr });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /consul: ok .* leader=127\.0\.0\.1:\d+/);
  await consul.stop();
  const down = gantry(['doctor', '--timeout', '1s'], { CONSUL_HTTP_ADDR: consul.addr });
  t.is(down.status, 1);
  t.regex(down.stdout, new RegExp(`consul: FAILED ${consul.addr.replace(/[.]/g, '\\.')}`));
});
