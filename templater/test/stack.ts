// A whole templater stack for one test: a real Consul, HAProxy (master-worker,
// started on a bootstrap config the templater replaces), dnsmasq reading the
// hosts file the templater writes, a VIP pool of its own on `lo`, and
// `gantry templater` with the shipped templates.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startHAProxy, type HAProxyEngine } from '../../test/harness/engines/haproxy.ts';
import { startDnsmasq, type DnsmasqEngine } from '../../test/harness/engines/dnsmasq.ts';
import { tempDir, removeDir } from '../../test/harness/process.ts';
import { bootstrapConfig, startTemplater, type TemplaterProcess } from './helpers.ts';

export interface Stack {
  dir: string;
  consul: ConsulEngine;
  haproxy: HAProxyEngine;
  dnsmasq: DnsmasqEngine;
  templater: TemplaterProcess;
  hostsFile: string;
  pool: string;
  /** the flags the templater was started with (to start another) */
  args: string[];
}

let poolCounter = 0;
/** a /24 on 127/8 no other test file of this run uses */
export function uniquePool(): string {
  poolCounter++;
  return `127.${100 + (process.pid % 120)}.${(poolCounter * 37 + Math.floor(Math.random() * 200)) % 256}.0/24`;
}

export function vipsOnLo(pool: string): string[] {
  const prefix = pool.split('.').slice(0, 3).join('.') + '.';
  const out = execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' });
  return [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!).filter((ip) => ip.startsWith(prefix));
}

export function removeVips(pool: string): void {
  for (const ip of vipsOnLo(pool)) {
    try { execFileSync('ip', ['addr', 'del', `${ip}/32`, 'dev', 'lo']); } catch { /* gone */ }
  }
}

export async function startStack(t: ExecutionContext, track: (name: string, e: { tail(n?: number): string; stop(): Promise<void> }) => void, extra: string[] = [], opts: { startTemplater?: boolean } = {}): Promise<Stack> {
  const dir = tempDir('templater');
  const pool = uniquePool();
  t.teardown(() => { removeVips(pool); removeDir(dir); });
  const consul = await startConsul();
  track('consul', consul);
  const haproxy = await startHAProxy({ config: bootstrapConfig });
  track('haproxy', haproxy);
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '');
  const dnsmasq = await startDnsmasq({ hostsFiles: [hostsFile] });
  track('dnsmasq', dnsmasq);
  // no state dir made here: the templater creates what it writes (a fresh --state-dir)
  const args = [
    '--consul-addr', consul.addr,
    '--haproxy-cfg', haproxy.cfgFile,
    '--haproxy-master-socket', haproxy.masterSocket,
    '--haproxy-admin-socket', haproxy.adminSocket,
    '--haproxy-state-file', join(dir, 'server-state'),
    '--hosts-file', hostsFile,
    '--dnsmasq-pid-file', dnsmasq.pidFile,
    '--l7-bind', `127.0.0.1:${haproxy.httpPort}`,
    '--l7-address', '127.0.0.1',
    '--vip-pool', pool,
    '--vip-interface', 'lo',
    '--state-dir', join(dir, 'state'),
    '--wait', '20ms:200ms',
    '--probe-interval', '300ms',
    '--consul-min-spacing', '20ms',
    '--log-level', 'debug',
    ...extra,
  ];
  const stack: Stack = { dir, consul, haproxy, dnsmasq, hostsFile, pool, args, templater: undefined as unknown as TemplaterProcess };
  if (opts.startTemplater !== false) {
    stack.templater = startTemplater(dir, args);
    track('templater', stack.templater);
  }
  return stack;
}
