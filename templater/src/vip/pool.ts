// VIPs for L4 groups, one a group, from a configured IPv4 pool. Assignments are
// stable: a group gets the same VIP on every render and after a restart (they are
// kept in a JSON file), and a group's first pick is a hash of its key so even a
// lost file mostly gives the same answer. A group that no longer wants a VIP (it
// left, or lost its gantry.tcp tag) keeps it for a grace period (a flapping
// service gets the same address back), then the address is given back to the
// pool. A pool with no free address is an error naming the pool and what waits.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GantryError, errorMessage, writeFileAtomic } from '@gantry/core';

export class VipPoolExhausted extends GantryError {
  readonly pool: string;
  readonly key: string;
  constructor(pool: string, key: string, message: string) {
    super('E_VIP_POOL_EXHAUSTED', message);
    this.pool = pool;
    this.key = key;
  }
}

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

/** lastUsed: the last render that used it (active), or when the group stopped wanting it (inactive) */
interface Reservation { vip: string; lastUsed: number; active: boolean }

export class VipPool {
  private readonly cidr: Cidr;
  private readonly first: number;
  private readonly count: number;
  private readonly reserved = new Map<string, Reservation>();
  private readonly byVip = new Map<string, string>();
  private readonly file: string | undefined;
  private readonly exclude: Set<string>;
  private readonly graceMs: number;
  private dirty = false;
  private saving: Promise<void> = Promise.resolve();

  constructor(opts: { pool: string; stateFile?: string | undefined; exclude?: readonly string[]; graceMs?: number }) {
    this.cidr = parseCidr(opts.pool);
    this.graceMs = opts.graceMs ?? 10 * 60_000;
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
      const data = JSON.parse(text) as { assignments?: Record<string, { vip?: unknown; lastUsed?: unknown; active?: unknown }> };
      const now = Date.now();
      for (const [key, r] of Object.entries(data.assignments ?? {})) {
        if (typeof r.vip !== 'string' || !this.contains(r.vip) || this.byVip.has(r.vip)) continue;
        // a group active when the file was written starts its grace period now, if it is gone
        const active = r.active === true;
        this.reserved.set(key, { vip: r.vip, lastUsed: active || typeof r.lastUsed !== 'number' ? now : r.lastUsed, active: false });
        this.byVip.set(r.vip, key);
      }
    } catch (err) {
      throw new GantryError('E_CONFIG', `VIP state file ${file} is not valid JSON: ${errorMessage(err)}`);
    }
  }

  /** the pool as the operator gave it, e.g. 127.77.0.0/24 */
  describe(): string {
    return `${ipToString(this.cidr.base)}/${this.cidr.bits}`;
  }

  /** the VIP of a group, assigning one if needed; throws VipPoolExhausted (naming the pool) when none is free */
  assign(key: string, now = Date.now()): string {
    const r = this.reserved.get(key);
    if (r) {
      if (!r.active) this.dirty = true;
      r.lastUsed = now;
      r.active = true;
      return r.vip;
    }
    const start = parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % this.count;
    for (let i = 0; i < this.count; i++) {
      const vip = ipToString(this.first + ((start + i) % this.count));
      if (!this.byVip.has(vip) && !this.exclude.has(vip)) return this.take(key, vip, now);
    }
    const waiting = [...this.reserved.values()].filter((x) => !x.active);
    const nextFree = waiting.length ? Math.max(0, Math.min(...waiting.map((x) => x.lastUsed)) + this.graceMs - now) : undefined;
    throw new VipPoolExhausted(this.describe(), key,
      `VIP pool ${this.describe()} is exhausted: ${this.count - this.exclude.size} addresses, ${this.reserved.size} reserved (${waiting.length} by groups that no longer want one, given back after the grace period of ${Math.round(this.graceMs / 1000)}s${nextFree === undefined ? '' : `, the first in ${Math.ceil(nextFree / 1000)}s`}); no VIP for ${JSON.stringify(key)}`);
  }

  /**
   * After a render: the groups in `inUse` keep their VIPs; one that no longer wants its
   * VIP starts its grace period now. Then every grace period that ran out gives its
   * address back. Returns what was given back.
   */
  release(inUse: ReadonlySet<string>, now = Date.now()): Array<{ key: string; vip: string }> {
    for (const [k, r] of this.reserved) {
      const active = inUse.has(k);
      if (active !== r.active) { r.active = active; r.lastUsed = now; this.dirty = true; }
      if (active) r.lastUsed = now;
    }
    return this.expire(now);
  }

  /** gives back the addresses whose grace period ran out */
  expire(now = Date.now()): Array<{ key: string; vip: string }> {
    const freed: Array<{ key: string; vip: string }> = [];
    for (const [k, r] of [...this.reserved.entries()]) {
      if (r.active || now - r.lastUsed < this.graceMs) continue;
      this.reserved.delete(k);
      this.byVip.delete(r.vip);
      this.dirty = true;
      freed.push({ key: k, vip: r.vip });
    }
    return freed;
  }

  /** ms until the next grace period runs out (undefined: none running) */
  nextExpiryIn(now = Date.now()): number | undefined {
    let next: number | undefined;
    for (const r of this.reserved.values()) if (!r.active) next = Math.min(next ?? Infinity, Math.max(0, r.lastUsed + this.graceMs - now));
    return next;
  }

  /** addresses not reserved */
  free(): number {
    return this.count - this.exclude.size - this.byVip.size;
  }

  private take(key: string, vip: string, now: number): string {
    this.reserved.set(key, { vip, lastUsed: now, active: true });
    this.byVip.set(vip, key);
    this.dirty = true;
    return vip;
  }

  /**
   * writes the assignments when they changed (core's writeFileAtomic: temp, fsync, rename). Writes
   * are serialized: a save called while another is under way waits for it and then writes the
   * state as it is then, so once a save resolves the file holds at least what was reserved when
   * it was called (an older write can never land after a newer one).
   */
  save(): Promise<void> {
    const run = this.saving.catch(() => undefined).then(() => this.write());
    this.saving = run;
    return run;
  }

  private async write(): Promise<void> {
    if (!this.file || !this.dirty) return;
    const assignments: Record<string, Reservation> = {};
    for (const k of [...this.reserved.keys()].sort()) assignments[k] = { ...this.reserved.get(k)! };
    this.dirty = false; // a change made while the write is under way marks it dirty again
    try {
      await writeFileAtomic(this.file, `${JSON.stringify({ pool: `${ipToString(this.cidr.base)}/${this.cidr.bits}`, assignments }, null, 2)}\n`);
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  vipOf(key: string): string | undefined {
    return this.reserved.get(key)?.vip;
  }
}
