import test from 'ava';
import { writeFileSync } from 'node:fs';
import { startDnsmasq } from '../harness/engines/dnsmasq.ts';
import { manageEngines } from '../harness/ava.ts';

const track = manageEngines(test);

test('dnsmasq starts, answers a DNS query from its hosts file, re-reads it on SIGHUP, and stops clean', async (t) => {
  const dns = await startDnsmasq();
  track('dnsmasq', dns);
  writeFileSync(dns.hostsFile, '127.0.0.21 orders.gantry.test\n');
  dns.reload();
  let got: string[] = [];
  for (let i = 0; i < 50 && got[0] !== '127.0.0.21'; i++) {
    got = await dns.resolve('orders.gantry.test').catch(() => []);
    if (got[0] !== '127.0.0.21') await new Promise((r) => setTimeout(r, 100));
  }
  t.deepEqual(got, ['127.0.0.21']);
  writeFileSync(dns.hostsFile, '127.0.0.22 orders.gantry.test\n');
  dns.reload();
  for (let i = 0; i < 50 && got[0] !== '127.0.0.22'; i++) {
    got = await dns.resolve('orders.gantry.test').catch(() => []);
    if (got[0] !== '127.0.0.22') await new Promise((r) => setTimeout(r, 100));
  }
  t.deepEqual(got, ['127.0.0.22']);
  const pid = dns.proc.pid;
  await dns.stop();
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
});
