// VIPs for L4 groups, one a group, from a configured IPv4 pool. Assignments are
// stable: a group gets the same VIP on every render and after a restart (they are
// kept in a JSON file), and a group's first pick is a hash of its key so even a
// lost file mostly gives the same answer. A group that leaves keeps its VIP
// reserved; only when the pool is full is the longest-unused reservation taken.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { GantryError, errorMessage } from '@gantry/core';

export interface Cidr { base: number; bits: number; size: number }

export function parseCidr(text: string): Cidr {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(text.trim());
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || bits < 16 || bits > 32) {
    throw new GantryError('E_CONFIG', `invalid VIP pool ${JSON.stringify(text)}: expected an IPv4 CIDR from /16 to /32, e.g. 127.77.0.0/24`);
  }
  const ip = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (ip & mask) >>> 0, bits, size: 2 ** (32 - bits) };
}

export const ipToString = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

function ipToNumber(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

interface Reservation { vip: string; lastUsed: number }

export class VipPool {
  private readonly cidr: Cidr;
  private readonly first: number;
  private readonly count: number;
  private readonly reserved = new Map<string, Reservation>();
  private readonly byVip = new Map<string, string>();
  private readonly file: string | undefined;
  private readonly exclude: Set<string>;
  private dirty = false;

  constructor(opts: { pool: string; stateFile?: string | undefined; exclude?: readonly string[] }) {
    this.cidr = parseCidr(opts.pool);
    this.exclude = new Set(opts.exclude ?? []);
    // no network or broadcast address in pools of 4 and more
    this.first = this.cidr.size >= 4 ? this.cidr.base + 1 : this.cidr.base;
    this.count = this.cidr.size >= 4 ? this.cidr.size - 2 : this.cidr.size;
    this.file = opts.stateFile;
    if (this.file) this.load(this.file);
  }

  /** whether an address belongs to the pool (and is not excluded) */
  contains(vip: string): boolean {
    const n = ipToNumber(vip);
    return n !== undefined && n >= this.first && n < this.first + this.count && !this.exclude.has(vip);
  }

  private load(file: string): void {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch { return; }
    try {
      const data = JSON.parse(text) as { assignments?: Record<string, { vip?: unknown; lastUsed?: unknown }> };
      for (const [key, r] of Object.entries(data.assignments ?? {})) {
        if (typeof r.vip !== 'string' || !this.contains(r.vip) || this.byVip.has(r.vip)) continue;
        this.reserved.set(key, { vip: r.vip, lastUsed: typeof r.lastUsed === 'number' ? r.lastUsed : 0 });
        this.byVip.set(r.vip, key);
      }
    } catch (err) {
      throw new GantryError('E_CONFIG', `VIP state file ${file} is not valid JSON: ${errorMessage(err)}`);
    }
  }

  /** the VIP of a group, assigning one if needed; null when the pool is exhausted */
  assign(key: string, now = Date.now()): string | null {
    const r = this.reserved.get(key);
    if (r) { r.lastUsed = now; return r.vip; }
    const start = parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % this.count;
    for (let i = 0; i < this.count; i++) {
      const vip = ipToString(this.first + ((start + i) % this.count));
      if (!this.byVip.has(vip) && !this.exclude.has(vip)) return this.take(key, vip, now);
    }
    return null;
  }

  /** at the end of a render: reclaims, if the pool is full, reservations not in use */
  reclaimFor(wanted: number, inUse: ReadonlySet<string>): void {
    const free = this.count - this.byVip.size;
    if (free >= wanted) return;
    const idle = [...this.reserved.entries()].filter(([k]) => !inUse.has(k)).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [k, r] of idle.slice(0, wanted - free)) {
      this.reserved.delete(k);
      this.byVip.delete(r.vip);
      this.dirty = true;
    }
  }

  private take(key: string, vip: string, now: number): string {
    this.reserved.set(key, { vip, lastUsed: now });
    this.byVip.set(vip, key);
    this.dirty = true;
    return vip;
  }

  /** writes the assignments when they changed (atomically) */
  save(): void {
    if (!this.file || !this.dirty) return;
    const assignments: Record<string, Reservation> = {};
    for (const k of [...this.reserved.keys()].sort()) assignments[k] = this.reserved.get(k)!;
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify({ pool: `${ipToString(this.cidr.base)}/${this.cidr.bits}`, assignments }, null, 2)}\n`);
    renameSync(tmp, this.file);
    this.dirty = false;
  }

  vipOf(key: string): string | undefined {
    return this.reserved.get(key)?.vip;
  }
}
