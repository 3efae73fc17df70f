// docker-compose.yml is valid for docker-compose and runs what the README says;
// it publishes nothing unauthenticated beyond 127.0.0.1, and Redis has a password.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './harness/bins.ts';
import { systemBin } from './harness/bins.ts';

const composeConfig = (args: string[], env: NodeJS.ProcessEnv) => {
  const { GANTRY_REDIS_PASSWORD: _drop, GANTRY_HTTP_BIND: _drop2, ...base } = process.env;
  return spawnSync(systemBin('docker-compose'), ['-f', join(repoRoot, 'docker-compose.yml'), 'config', ...args], { encoding: 'utf8', cwd: repoRoot, env: { ...base, ...env } });
};
const password = 'compose-test-pw';

test('docker-compose config accepts docker-compose.yml with the engines and Gantry parts', (t) => {
  const r = composeConfig(['--services'], { GANTRY_REDIS_PASSWORD: password });
  t.is(r.status, 0, r.stderr);
  const services = r.stdout.trim().split('\n').sort();
  for (const s of ['consul', 'haproxy', 'redis', 'zookeeper', 'registrator', 'templater', 'dnsmasq']) t.true(services.includes(s), `service ${s} in ${services.join(',')}`);
  const full = composeConfig([], { GANTRY_REDIS_PASSWORD: password });
  t.is(full.status, 0, full.stderr);
  t.regex(full.stdout, /image: hashicorp\/consul:1\.22/);
  t.regex(full.stdout, /command: registrator /);
  t.regex(full.stdout, /command: templater --haproxy-cfg/);
});

test('every published port is bound to 127.0.0.1 (the front door only when GANTRY_HTTP_BIND opens it)', (t) => {
  const full = composeConfig([], { GANTRY_REDIS_PASSWORD: password });
  t.is(full.status, 0, full.stderr);
  const published = full.stdout.split('\n').filter((l) => /^\s+- (?:[\d.]+:)?\d+:\d+(?:\/(?:tcp|udp))?$/.test(l)).map((l) => l.trim().slice(2));
  t.true(published.length >= 9, published.join(' '));
  for (const p of published) t.true(p.startsWith('127.0.0.1:'), `${p} is bound to 127.0.0.1`);
  for (const port of ['8500', '8600', '6379', '2181', '8404', '9101', '9102', '9103', '9080', '5353', '80']) t.true(published.some((p) => p.startsWith(`127.0.0.1:${port}:`)), `port ${port} published on loopback`);
  const open = composeConfig([], { GANTRY_REDIS_PASSWORD: password, GANTRY_HTTP_BIND: '0.0.0.0:80' });
  t.is(open.status, 0, open.stderr);
  t.regex(open.stdout, /- 0\.0\.0\.0:80:80\/tcp/);
  t.is(open.stdout.match(/- 0\.0\.0\.0:/g)?.length, 1, 'only the front door opens');
});

test('Redis requires a password: compose refuses to start without one; the registrator\'s audit URL carries it in its environment, not its command line', (t) => {
  const none = composeConfig([], {});
  t.not(none.status, 0);
  t.regex(none.stderr, /GANTRY_REDIS_PASSWORD/);
  const full = composeConfig([], { GANTRY_REDIS_PASSWORD: password });
  t.regex(full.stdout, /--requirepass "\$\$REDIS_PASSWORD"/);
  t.regex(full.stdout, new RegExp(`REDIS_PASSWORD: ${password}`));
  t.regex(full.stdout, new RegExp(`GANTRY_AUDIT_REDIS: redis://:${password}@redis:6379`));
  t.false(/command: (registrator|gateway)[^\n]*redis:\/\//.test(full.stdout), 'no Redis URL on a command line');
});
