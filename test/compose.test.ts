// docker-compose.yml is valid for docker-compose and runs what the README says.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './harness/bins.ts';
import { systemBin } from './harness/bins.ts';

test('docker-compose config accepts docker-compose.yml with the engines and Gantry parts', (t) => {
  const compose = systemBin('docker-compose');
  const r = spawnSync(compose, ['-f', join(repoRoot, 'docker-compose.yml'), 'config', '--services'], { encoding: 'utf8', cwd: repoRoot });
  t.is(r.status, 0, r.stderr);
  const services = r.stdout.trim().split('\n').sort();
  for (const s of ['consul', 'haproxy', 'redis', 'zookeeper', 'registrator', 'templater', 'dnsmasq']) t.true(services.includes(s), `service ${s} in ${services.join(',')}`);
  const full = spawnSync(compose, ['-f', join(repoRoot, 'docker-compose.yml'), 'config'], { encoding: 'utf8', cwd: repoRoot });
  t.is(full.status, 0, full.stderr);
  t.regex(full.stdout, /image: hashicorp\/consul:1\.22/);
  t.regex(full.stdout, /command: registrator /);
  t.regex(full.stdout, /command: templater --haproxy-cfg/);
});
