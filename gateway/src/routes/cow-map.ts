// A string-keyed map that a new version can share with the old one: its entries
// live in 64 shards (by a hash of the key), a derived map shares every shard and
// copies one only the first time it writes to it. Route tables use it so that a
// change to a 50,000-entry map copies ~800 entries, not 50,000, and the previous
// table (still serving requests that started on it) never sees the write.
const BITS = 6;
const SHARDS = 1 << BITS;

/** FNV-1a over the UTF-16 code units, folded to a shard index */
function shardOf(k: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 16)) & (SHARDS - 1);
}

export class CowMap<V> {
  private readonly shards: Array<Map<string, V> | undefined>;
  /** shards this version created or copied (may write); the others are shared */
  private readonly owned = new Uint8Array(SHARDS);
  private count: number;

  constructor(from?: CowMap<V>) {
    this.shards = from ? from.shards.slice() : new Array<Map<string, V> | undefined>(SHARDS).fill(undefined);
    this.count = from ? from.count : 0;
  }

  get size(): number { return this.count; }

  get(k: string): V | undefined { return this.shards[shardOf(k)]?.get(k); }

  has(k: string): boolean { return this.shards[shardOf(k)]?.has(k) ?? false; }

  private writable(i: number): Map<string, V> {
    let m = this.shards[i];
    if (this.owned[i] === 0) {
      m = new Map(m);
      this.shards[i] = m;
      this.owned[i] = 1;
    }
    return m!;
  }

  /** true when the key is new */
  set(k: string, v: V): boolean {
    const m = this.writable(shardOf(k));
    const before = m.size;
    m.set(k, v);
    if (m.size === before) return false;
    this.count++;
    return true;
  }

  delete(k: string): boolean {
    const i = shardOf(k);
    if (!this.shards[i]?.has(k)) return false;
    this.writable(i).delete(k);
    this.count--;
    return true;
  }

  *values(): IterableIterator<V> {
    for (const m of this.shards) if (m) yield* m.values();
  }

  /** the only value, when the map holds exactly one */
  only(): V | undefined {
    if (this.count !== 1) return undefined;
    for (const m of this.shards) if (m?.size) return m.values().next().value;
    return undefined;
  }
}
