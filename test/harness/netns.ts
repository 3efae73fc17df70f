// A "legacy VM" for end-to-end tests: a network namespace joined to this host
// by a veth pair with a /30 of 10.250.0.0/16, its own resolv.conf (through
// /etc/netns/<name>/, which `ip netns exec` mounts over /etc/resolv.conf), and
// routes only to what the test names. Names are unique per run (so parallel
// test files do not collide), and destroy() removes the namespace, the veth
// pair with its addresses, and the resolv.conf.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const run = promisify(execFile);

export interface ExecResult { code: number; stdout: string; stderr: string }

export interface LegacyVm {
  /** the namespace's name (ip netns) */
  readonly name: string;
  /** the veth end on this host, and its address */
  readonly hostIf: string;
  readonly hostAddr: string;
  /** the veth end in the namespace, and its address */
  readonly vmIf: string;
  readonly vmAddr: string;
  /** runs a command inside the namespace; never throws for its exit status */
  exec(argv: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /** the namespace's resolver (port 53 of this address) */
  setResolver(nameserver: string, search?: string): void;
  /** a route inside the namespace to cidr through this host */
  addRoute(cidr: string): Promise<void>;
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args);
  return stdout;
}

/** a /30 in 10.250.0.0/16 that no interface of this host uses yet */
async function freeSubnet(): Promise<{ host: string; vm: string }> {
  const used = await ip('-o', '-4', 'addr', 'show');
  for (let i = 0; i < 50; i++) {
    const third = randomBytes(1)[0]!;
    const fourth = (randomBytes(1)[0]! % 64) * 4;
    const base = `10.250.${third}.`;
    const host = `${base}${fourth + 1}`;
    const vm = `${base}${fourth + 2}`;
    if (!used.includes(` ${host}/`) && !used.includes(` ${vm}/`)) return { host, vm };
  }
  throw new Error('netns: no free /30 in 10.250.0.0/16');
}

export async function createLegacyVm(): Promise<LegacyVm> {
  const id = randomBytes(4).toString('hex');
  const name = `gantry-vm-${id}`;
  const hostIf = `gv${id}h`;
  const vmIf = `gv${id}v`;
  const { host: hostAddr, vm: vmAddr } = await freeSubnet();
  const etcDir = join('/etc/netns', name);
  let created = false;
  const destroy = async (): Promise<void> => {
    await ip('netns', 'del', name).catch(() => undefined);
    await ip('link', 'del', hostIf).catch(() => undefined); // gone with the namespace, unless that failed
    rmSync(etcDir, { recursive: true, force: true });
  };
  try {
    await ip('netns', 'add', name);
    created = true;
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', vmIf);
    await ip('link', 'set', vmIf, 'netns', name);
    await ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    await ip('link', 'set', hostIf, 'up');
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    await ip('-n', name, 'addr', 'add', `${vmAddr}/30`, 'dev', vmIf);
    await ip('-n', name, 'link', 'set', vmIf, 'up');
  } catch (err) {
    if (created) await destroy();
    throw err;
  }
  return {
    name, hostIf, hostAddr, vmIf, vmAddr,
    async exec(argv, opts = {}) {
      try {
        const { stdout, stderr } = await run('ip', ['netns', 'exec', name, ...argv], { timeout: opts.timeoutMs ?? 30_000, encoding: 'utf8' });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
        return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
      }
    },
    setResolver(nameserver, search) {
      mkdirSync(etcDir, { recursive: true });
      writeFileSync(join(etcDir, 'resolv.conf'), `nameserver ${nameserver}\n${search ? `search ${search}\n` : ''}options timeout:1 attempts:2\n`);
    },
    async addRoute(cidr) {
      await ip('-n', name, 'route', 'replace', cidr, 'via', hostAddr);
    },
    destroy,
  };
}
