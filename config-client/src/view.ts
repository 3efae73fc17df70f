// One immutable view of the configuration: the values map, and the key list
// and nested trees derived from it on demand. A new view replaces the old one
// in a single assignment, so a reader sees all of a change or none of it.
import type { ConfigTree, ConfigValue } from './types.ts';

export class View {
  readonly values: ReadonlyMap<string, ConfigValue>;
  private sorted: string[] | undefined;
  /** parsed JSON of string values, per key (getJSON) */
  readonly jsonCache = new Map<string, { ok: boolean; value: unknown }>();

  constructor(values: ReadonlyMap<string, ConfigValue>) {
    this.values = values;
  }

  /** Keys in order; with a prefix, those starting with it. */
  keys(prefix = ''): string[] {
    this.sorted ??= [...this.values.keys()].sort();
    if (prefix === '') return [...this.sorted];
    const all = this.sorted;
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (all[mid]! < prefix) lo = mid + 1;
      else hi = mid;
    }
    const out: string[] = [];
    for (let i = lo; i < all.length && all[i]!.startsWith(prefix); i++) out.push(all[i]!);
    return out;
  }

  /**
   * The keys under a folder as a nested object: `tree('db')` of db/url and
   * db/pool/max is { url, pool: { max } }. A key that is also the parent of
   * other keys is left out of the tree (get() still has it).
   */
  tree(prefix = ''): ConfigTree {
    const folder = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    const root: ConfigTree = {};
    const subtrees = new WeakSet<object>([root]);
    const isSubtree = (v: unknown): v is ConfigTree => typeof v === 'object' && v !== null && subtrees.has(v);
    for (const key of this.keys(folder)) {
      const parts = key.slice(folder.length).split('/');
      let node = root;
      for (let i = 0; i < parts.length - 1; i++) {
        const seg = parts[i]!;
        const child = Object.hasOwn(node, seg) ? node[seg] : undefined;
        if (isSubtree(child)) {
          node = child;
        } else {
          const fresh: ConfigTree = {};
          subtrees.add(fresh);
          define(node, seg, fresh);
          node = fresh;
        }
      }
      const last = parts[parts.length - 1]!;
      if (isSubtree(Object.hasOwn(node, last) ? node[last] : undefined)) continue;
      define(node, last, this.values.get(key)!);
    }
    return root;
  }
}

/** Sets a property without ever reaching a prototype (a key may be "__proto__"). */
function define(obj: ConfigTree, key: string, value: ConfigValue | ConfigTree): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
