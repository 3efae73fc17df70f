// Where each L7 group is served, so a new service goes live without a reload
// (the way the OpenShift router's dynamic config manager does it): the config
// HAProxy runs holds, besides a backend for every group it knew at the last
// reload, a pool of spare backends (gantry_spare_<n>, every server slot empty)
// and routes by a Host → backend map. A group that appears between reloads is
// given a free spare backend: its servers are filled and its names added to the
// map through the Runtime API. A group that cannot take a spare (none left, or
// path routes, which are ACLs in the config) is "overflow": the runner reloads
// with a compact layout (every group in its own backend, the spares empty
// again) and, when spares ran out, a pool grown for the next ones. When a new
// group takes the last spare, that reload is made right away, after the group
// is live, so the next new group finds a spare instead of waiting for it.
// The pool is never smaller than a share of the groups with their own backend
// (perHundred, from --spare-backends-percent, 1 by default): a burst of new services on a big catalog, where
// a reload costs a second or more, fits in the spares instead of waiting for it.
// A group with its own backend that leaves the catalog entirely keeps that
// backend in the config as a retired one (servers emptied, its names dropped
// from the map through the Runtime API): no reload for a removal, and the same
// group coming back fills it again. The next reload's compact layout drops it.
import type { GroupView, Route } from '../view.ts';

export const spareName = (i: number): string => `gantry_spare_${i + 1}`;

export class RouteTable {
  private readonly minSpares: number;
  private readonly maxSpares: number;
  /** spares per 100 own groups at a compact layout (0: only minSpares and the doubling) */
  private readonly perHundred: number;
  /** groups with their own backend in the config HAProxy runs (set at each committed reload) */
  private own = new Set<string>();
  /** each own group as last routed: what a retired backend is rendered from when the group is gone */
  private lastSeen = new Map<string, GroupView>();
  /** spare backend index → group key */
  private readonly spareGroup = new Map<number, string>();
  /** spares in the config HAProxy runs */
  private size: number;
  /** false until a config with spares is known to run: every group then gets its own backend */
  private committed = false;
  /** spares ran out since the last reload: the next compact layout grows the pool */
  private exhausted = false;

  constructor(opts: { spares: number; maxSpares?: number; perHundred?: number }) {
    this.minSpares = Math.max(0, opts.spares);
    this.maxSpares = Math.max(this.minSpares, opts.maxSpares ?? 1000);
    this.perHundred = Math.max(0, opts.perHundred ?? 0);
    this.size = this.minSpares;
  }

  /** a router for buildView; compact: every group in its own backend, the (grown) spare pool empty */
  router(compact: boolean): { route(g: GroupView): Route; spares(): string[]; groupOf(spare: string): string | null; retired(present: ReadonlySet<string>): GroupView[]; used(keys: ReadonlySet<string>): void } {
    // the pool's size is known once every group is routed (a compact layout sizes it by its groups)
    let ownCount = 0;
    let names: string[] | undefined;
    const spareNames = (): string[] => {
      names ??= Array.from({ length: compact || !this.committed ? this.nextSize(ownCount) : this.size }, (_, i) => spareName(i));
      return names;
    };
    return {
      route: (g) => {
        const own = { backend: g.backend, spare: false };
        if (compact || !this.committed || this.own.has(g.key)) {
          this.lastSeen.set(g.key, { ...g });
          if (g.mode === 'http') ownCount++;
          return own;
        }
        for (const [i, k] of this.spareGroup) if (k === g.key) return { backend: spareName(i), spare: true };
        if (g.paths.length) return 'overflow';
        for (let i = 0; i < this.size; i++) {
          if (!this.spareGroup.has(i)) { this.spareGroup.set(i, g.key); return { backend: spareName(i), spare: true }; }
        }
        this.exhausted = true;
        return 'overflow';
      },
      spares: spareNames,
      groupOf: (spare) => {
        if (compact) return null;
        const i = spareNames().indexOf(spare);
        return i < 0 ? null : this.spareGroup.get(i) ?? null;
      },
      // own groups no longer in the catalog: their backends stay in the config, emptied (path routes
      // are ACLs in the frontend: such a group's removal needs a reload)
      retired: (present) => {
        if (compact || !this.committed) return [];
        const out: GroupView[] = [];
        for (const key of this.own) {
          const g = this.lastSeen.get(key);
          if (!present.has(key) && g && g.mode === 'http' && g.paths.length === 0) out.push(g);
        }
        return out;
      },
      // groups not in this view give their spare back
      used: (keys) => {
        if (compact) return;
        for (const [i, k] of [...this.spareGroup]) if (!keys.has(k)) this.spareGroup.delete(i);
      },
    };
  }

  /** the pool of the next compact layout: as it is, doubled when it ran out, at least perHundred per 100 own groups */
  private nextSize(ownGroups: number): number {
    if (this.minSpares === 0) return 0;
    const base = !this.committed ? this.size : this.exhausted ? Math.max(1, this.size * 2) : this.size;
    const share = Math.ceil((ownGroups * this.perHundred) / 100);
    return Math.min(this.maxSpares, Math.max(base, share));
  }

  /**
   * every spare of the running config is taken (the last one just now): the pool has run out, so
   * the next compact layout grows it. The runner reloads right away, off any change's path, so the
   * next new service finds a spare. False when the pool is at its maximum (maxSpares, 1,000).
   */
  ranOut(): boolean {
    if (!this.committed || this.size === 0 || this.size >= this.maxSpares || this.spareGroup.size < this.size) return false;
    this.exhausted = true;
    return true;
  }

  /** a reload of a compact layout succeeded: its groups own backends, its spares are all free */
  commit(ownGroups: Iterable<string>, spares: number): void {
    this.own = new Set(ownGroups);
    for (const k of [...this.lastSeen.keys()]) if (!this.own.has(k)) this.lastSeen.delete(k);
    this.spareGroup.clear();
    this.size = spares;
    this.committed = true;
    this.exhausted = false;
  }

  /** the config HAProxy runs is unknown again (a restart of the target, a template edit) */
  reset(): void {
    this.committed = false;
  }

  stats(): { spares: number; used: number; committed: boolean } {
    return { spares: this.size, used: this.spareGroup.size, committed: this.committed };
  }
}
