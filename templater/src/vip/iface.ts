// Puts VIPs on a network interface (`ip addr add <vip>/32 dev <iface>`) before
// HAProxy binds them, and takes off those no group uses any more once a config
// without them runs. Only addresses inside the configured pool are ever removed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GantryError } from '@gantry/core';

const run = promisify(execFile);

export class VipInterface {
  private readonly iface: string;
  private readonly ipBin: string;
  private readonly inPool: (ip: string) => boolean;

  constructor(opts: { iface: string; inPool: (ip: string) => boolean; ipBin?: string }) {
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(opts.iface)) throw new GantryError('E_CONFIG', `invalid interface name ${JSON.stringify(opts.iface)}`);
    this.iface = opts.iface;
    this.inPool = opts.inPool;
    this.ipBin = opts.ipBin ?? 'ip';
  }

  /** IPv4 addresses on the interface that belong to the pool */
  async present(): Promise<Set<string>> {
    const { stdout } = await run(this.ipBin, ['-o', '-4', 'addr', 'show', 'dev', this.iface]);
    const out = new Set<string>();
    for (const m of stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)) if (this.inPool(m[1]!)) out.add(m[1]!);
    return out;
  }

  /** adds what is missing; returns the addresses added */
  async ensure(vips: Iterable<string>): Promise<string[]> {
    const have = await this.present();
    const added: string[] = [];
    for (const vip of vips) {
      if (have.has(vip) || !this.inPool(vip)) continue;
      try {
        await run(this.ipBin, ['addr', 'add', `${vip}/32`, 'dev', this.iface]);
      } catch (err) {
        // "File exists": someone added it meanwhile
        if (!/File exists/.test(String((err as { stderr?: string }).stderr ?? err))) {
          throw new GantryError('E_VIP', `cannot add VIP ${vip} to ${this.iface}: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
        }
      }
      added.push(vip);
    }
    return added;
  }

  /** removes pool addresses not in keep; returns the addresses removed */
  async prune(keep: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const vip of await this.present()) {
      if (keep.has(vip)) continue;
      await run(this.ipBin, ['addr', 'del', `${vip}/32`, 'dev', this.iface]).catch(() => undefined);
      removed.push(vip);
    }
    return removed;
  }
}
