// Which instances of a service a request may go to, and which one it goes to.
// Compiled once per route-table build from the service's policy:
//   1. a header or cookie match (send testers to green) wins,
//   2. then the blue/green switch (all traffic to the active subset),
//   3. then the weighted split by subset (canary: 95 % version=v1, 5 % version=v2),
//   4. else every healthy instance.
// An empty subset (no healthy instance) is left out of the split.
import type { IncomingHttpHeaders } from 'node:http';
import { inSubset, type ServicePolicy, type Subset } from './config.ts';
import type { OutlierDetector, UpstreamHealth } from './outlier.ts';

export interface Selectable {
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly health: UpstreamHealth;
}

/** a set of instances with its own round-robin cursor */
export interface InstanceSet<U extends Selectable> {
  readonly name: string;
  readonly instances: readonly U[];
  cursor: number;
}

export interface Selector<U extends Selectable> {
  readonly matches: ReadonlyArray<{ header: string | undefined; cookie: string | undefined; value: string; set: InstanceSet<U> }>;
  readonly active: InstanceSet<U> | undefined;
  /** cumulative weights (0..1) and their sets */
  readonly split: { cum: number[]; sets: InstanceSet<U>[] } | undefined;
  readonly all: InstanceSet<U>;
}

const NONE: Selector<never>['matches'] = Object.freeze([]);

const subsetName = (s: Subset): string => Object.entries(s).map(([k, v]) => `${k}=${v}`).join(',');

function setOf<U extends Selectable>(name: string, instances: readonly U[]): InstanceSet<U> {
  return { name, instances, cursor: Math.floor(Math.random() * Math.max(1, instances.length)) };
}

export function compileSelector<U extends Selectable>(instances: readonly U[], p: ServicePolicy | undefined): Selector<U> {
  const all = setOf('all', instances);
  if (!p) return { matches: NONE, active: undefined, split: undefined, all };
  const sub = (name: string, s: Subset): InstanceSet<U> => setOf(name, instances.filter((i) => inSubset(s, i.tags, i.meta)));
  const matches = p.match.map((m) => ({ header: m.header, cookie: m.cookie, value: m.value, set: sub(subsetName(m.subset), m.subset) }));
  const activeSubset = p.active !== undefined ? p.subsets.get(p.active) : undefined;
  const active = activeSubset ? sub(p.active!, activeSubset) : undefined;
  let split: Selector<U>['split'];
  const parts = p.split.map((r) => ({ w: r.weight, set: sub(subsetName(r.subset), r.subset) })).filter((x) => x.w > 0 && x.set.instances.length > 0);
  const total = parts.reduce((a, x) => a + x.w, 0);
  if (parts.length && total > 0) {
    let acc = 0;
    split = { cum: parts.map((x) => (acc += x.w / total)), sets: parts.map((x) => x.set) };
    split.cum[split.cum.length - 1] = 1;
  }
  return { matches, active, split, all };
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** the set a request is sent to */
export function chooseSet<U extends Selectable>(sel: Selector<U>, headers: IncomingHttpHeaders, random: number): InstanceSet<U> {
  for (const m of sel.matches) {
    const got = m.header !== undefined ? headers[m.header] : cookieValue(headers.cookie, m.cookie!);
    if (got === m.value && m.set.instances.length) return m.set;
  }
  if (sel.active) return sel.active;
  if (sel.split) {
    const { cum, sets } = sel.split;
    for (let i = 0; i < cum.length; i++) if (random < cum[i]!) return sets[i]!;
    return sets[sets.length - 1]!;
  }
  return sel.all;
}

/**
 * Round robin over the set, skipping upstreams the outlier detector holds out and
 * those in `exclude` (already tried). When every one is held out, the least
 * recently ejected is used anyway (panic: better a try than a certain 503).
 */
export function pickInstance<U extends Selectable>(set: InstanceSet<U>, outliers: OutlierDetector, now: number, exclude?: ReadonlySet<U>): U | undefined {
  const n = set.instances.length;
  if (n === 0) return undefined;
  let fallback: U | undefined;
  for (let i = 0; i < n; i++) {
    const u = set.instances[(set.cursor + i) % n]!;
    if (exclude?.has(u)) continue;
    if (outliers.admit(u.health, now)) {
      set.cursor = (set.cursor + i + 1) % n;
      return u;
    }
    if (!fallback || u.health.ejectedUntil < fallback.health.ejectedUntil) fallback = u;
  }
  if (fallback) set.cursor = (set.cursor + 1) % n;
  return fallback;
}
