// A real dnsmasq answering from hosts files only (no upstream), on a free
// loopback port (free for both UDP and TCP).
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { systemBin } from '../bins.ts';
import { spawnEngine, tempDir, freePort, waitUntil, removeDir, retryPortClash, type ManagedProcess } from '../process.ts';

export interface DnsmasqEngine {
  readonly port: number;
  readonly hostsFile: string;
  /** dnsmasq's pid file (a templater sends SIGHUP through it) */
  readonly pidFile: string;
  proc: ManagedProcess;
  /** SIGHUP: dnsmasq re-reads its addn-hosts files */
  reload(): void;
  resolve(name: string): Promise<string[]>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => { s.close(); resolve(false); });
    s.bind(port, '127.0.0.1', () => { s.close(); resolve(true); });
  });
}

export interface DnsmasqOptions {
  hostsFiles?: string[];
  domain?: string;
  /** listen on this address instead of 127.0.0.1 (e.g. a veth address a network namespace resolves through) */
  listenAddress?: string;
  /** a fixed port (53 for a resolv.conf); default: a free one */
  port?: number;
}

/** Starts dnsmasq; on a free port taken before it binds, again with a new one. */
export function startDnsmasq(opts: DnsmasqOptions = {}): Promise<DnsmasqEngine> {
  return opts.port === undefined ? retryPortClash(() => startDnsmasqOnce(opts)) : startDnsmasqOnce(opts);
}

async function startDnsmasqOnce(opts: DnsmasqOptions): Promise<DnsmasqEngine> {
  const bin = systemBin('dnsmasq');
  const dir = tempDir('dnsmasq');
  const listen = opts.listenAddress ?? '127.0.0.1';
  let port = opts.port ?? await freePort();
  while (opts.port === undefined && !(await udpFree(port))) port = await freePort();
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, '127.0.0.1 harness.gantry.test\n');
  const args = [
    '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll',
    `--port=${port}`, `--listen-address=${listen}`, '--bind-interfaces',
    // --user=root: the default (nobody) could not read hosts files in 0700 temp dirs
    `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--log-facility=-', '--log-queries', '--user=root',
    `--addn-hosts=${hostsFile}`, ...(opts.hostsFiles ?? []).map((f) => `--addn-hosts=${f}`),
    ...(opts.domain ? [`--local=/${opts.domain}/`] : []),
  ];
  const proc = spawnEngine('dnsmasq', bin, args, { logFile: join(dir, 'dnsmasq.log'), cwd: dir });
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`${listen}:${port}`]);
  await waitUntil('dnsmasq', async () => (await resolver.resolve4('harness.gantry.test')).includes('127.0.0.1'), { proc, timeoutMs: 15_000 })
    .catch(async (err: unknown) => { await proc.kill(); throw err; }); // nothing left running when it fails
  return {
    port, hostsFile, proc, pidFile: join(dir, 'dnsmasq.pid'),
    reload: () => { process.kill(proc.pid, 'SIGHUP'); },
    resolve: (name) => resolver.resolve4(name),
    async stop() { await proc.stop(); removeDir(dir); },
    tail: (n) => proc.tail(n),
  };
}
