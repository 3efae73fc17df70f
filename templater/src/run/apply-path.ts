// The choice of apply path for a render, and what is remembered of the last
// applied one to make it:
//   runtime — the render differs from the applied one only in which instance sits
//             in which server slot, and in the Host → backend map (a new service in
//             a spare backend, a host name added): the Runtime API applies it and
//             the file is written without a reload;
//   reload  — anything else (a new backend, a new L4 listener, a template edit, a
//             spare pool run out): check, atomic write, reload.
import type { View, GroupView, SlotView } from '../view.ts';
import type { RuntimeBackend } from '../runtime/runtime-api.ts';
import { skeletonOf } from '../view.ts';

export interface Applied {
  content: string;
  view: View;
  /** the groups without their slots: when it differs, the change is not instances only */
  structure: string;
  /** the render with every slot empty (made when first needed): equal means only slot contents changed */
  skeleton: string | undefined;
  slotCounts: Map<string, number>;
  /** each backend's slots, to tell which backends a change touched */
  slotSig: Map<string, string>;
  vips: Set<string>;
}

export type PathChoice = { path: 'runtime' } | { path: 'reload'; reason: string };

/** what a change to it would need a reload for: the backends of the config (not the slots, not the host map) */
export function structureOf(view: View): string {
  const own = (g: GroupView): unknown[] => [g.backend, g.fqdn, g.mode, g.tcpPort, g.vip, g.tenant, g.service, g.paths, g.paths.length ? g.matchHosts : null];
  const groups = [...view.l7Backends, ...view.tcp].map(own);
  return JSON.stringify([groups, view.spares.map((s) => s.backend), view.kv, view.settings]);
}

export function slotSigOf(slots: readonly SlotView[]): string {
  let sig = '';
  for (const s of slots) sig += `${s.name}=${s.address ?? ''}:${s.port ?? ''};`;
  return sig;
}

/** every backend of the config with its slots: own L7 and L4 backends, and the spares */
export function backendsOf(view: View, withSpares = true): RuntimeBackend[] {
  const out: RuntimeBackend[] = [...view.l7Backends, ...view.tcp].map((g) => ({ backend: g.backend, slots: g.slots }));
  if (withSpares) for (const s of view.spares) out.push({ backend: s.backend, slots: s.slots });
  return out;
}

/** the backends whose slots differ from the applied view's (new ones included) */
export function changedBackends(applied: Applied, view: View): Set<string> {
  const out = new Set<string>();
  for (const b of backendsOf(view)) if (applied.slotSig.get(b.backend) !== slotSigOf(b.slots)) out.add(b.backend);
  return out;
}

export function remembered(view: View, content: string): Applied {
  const backends = backendsOf(view);
  return {
    content,
    view,
    structure: structureOf(view),
    skeleton: undefined,
    slotCounts: new Map(backends.map((b) => [b.backend, b.slots.length])),
    slotSig: new Map(backends.map((b) => [b.backend, slotSigOf(b.slots)])),
    vips: new Set(view.tcp.map((g) => g.vip!)),
  };
}

export interface PathInput {
  applied: Applied | undefined;
  view: View;
  hasRuntime: boolean;
  /** a reload is owed (the target was down, or the last reload failed) */
  reloadOwed: boolean;
  /** renders a view (undefined when the template fails on it) */
  render: (v: View) => string | undefined;
}

export function chooseApplyPath(i: PathInput): PathChoice {
  if (!i.hasRuntime) return { path: 'reload', reason: 'no Runtime API for this template' };
  if (!i.applied) return { path: 'reload', reason: 'first render' };
  if (i.reloadOwed) return { path: 'reload', reason: 'a reload is owed' };
  if (i.view.overflow.length) return { path: 'reload', reason: `${i.view.overflow.length} new L7 service(s) without a spare backend (spares used up, or path routes)` };
  if (structureOf(i.view) !== i.applied.structure) return { path: 'reload', reason: 'backends or listeners changed' };
  i.applied.skeleton ??= i.render(skeletonOf(i.applied.view));
  const skeleton = i.render(skeletonOf(i.view, i.applied.slotCounts));
  if (skeleton === undefined || skeleton !== i.applied.skeleton) return { path: 'reload', reason: 'the render differs beyond server slots and the host map' };
  return { path: 'runtime' };
}
