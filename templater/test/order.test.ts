// Templates run in the order given, and a later one never renders a newer catalog
// than the ones before it: a change that arrives while the first template's reload
// runs reaches the second only after the first (a hosts file never names a service
// the HAProxy config before it does not serve yet). Real Consul; the first
// template's reload is a slow command so the change lands in the middle of it.
import test from 'ava';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { manageEngines } from '../../test/harness/ava.ts';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { tempDir, removeDir, waitUntil } from '../../test/harness/process.ts';
import { register, startTemplater } from './helpers.ts';

const track = manageEngines(test);

const names = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8') : '').split('\n').filter(Boolean).sort();

test('a change arriving during the first template\'s reload reaches the second template only after the first', async (t) => {
  const dir = tempDir('templater-order');
  t.teardown(() => removeDir(dir));
  const consul = await startConsul();
  track('consul', consul);
  const first = join(dir, 'first.txt');
  const second = join(dir, 'second.txt');
  writeFileSync(join(dir, 'names.hbs'), '{{#each services}}{{name}}\n{{/each}}');
  // the first template's reload takes 600 ms and records that it started
  writeFileSync(join(dir, 'c.json'), JSON.stringify({
    templates: [
      { name: 'first', source: 'names.hbs', destination: 'first.txt', reload: { command: ['sh', '-c', `echo x >> ${join(dir, 'reloads')}; sleep 0.6`] } },
      { name: 'second', source: 'names.hbs', destination: 'second.txt' },
    ],
  }));
  await register(consul.addr, { id: 'alpha-1', name: 'alpha', port: 8001 });
  const tp = startTemplater(dir, ['--consul-addr', consul.addr, '--config', join(dir, 'c.json'), '--state-dir', join(dir, 'state'), '--wait', '10ms:100ms', '--log-level', 'debug']);
  track('templater', tp);
  await waitUntil('both files name alpha', async () => names(second).includes('alpha'), { timeoutMs: 20_000, proc: tp.proc });

  // a reload of the first template in progress: register beta in the middle of it
  const reloadsBefore = names(join(dir, 'reloads')).length;
  await register(consul.addr, { id: 'gamma-1', name: 'gamma', port: 8003 });
  await waitUntil('the first template reloading for gamma', async () => names(join(dir, 'reloads')).length > reloadsBefore, { timeoutMs: 10_000, intervalMs: 5 });
  await register(consul.addr, { id: 'beta-1', name: 'beta', port: 8002 });

  // every 5 ms until the second file has all three: the second file never holds a name the first lacks
  const violations: string[] = [];
  await waitUntil('the second file names alpha, beta and gamma', async () => {
    const a = names(first);
    const b = names(second);
    for (const n of b) if (!a.includes(n)) violations.push(`${n} in second, first has [${a.join(',')}]`);
    return b.length === 3;
  }, { timeoutMs: 20_000, intervalMs: 5, proc: tp.proc });
  t.deepEqual(violations, []);
  t.deepEqual(names(first), ['alpha', 'beta', 'gamma']);
  t.deepEqual(names(second), ['alpha', 'beta', 'gamma']);
});
