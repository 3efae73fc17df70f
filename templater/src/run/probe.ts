// Probing reload targets (HAProxy masters): two misses in a row mean down
// (reported once, counted in gantry_templater_target_up); a target that is back,
// or that restarted (another master pid), is reported to the runner so it gets the
// current config. Other reload kinds are not probed.
import { type Logger } from '@gantry/core';
import type { Reloader } from '../apply/reload.ts';
import type { TemplaterMetrics } from '../metrics.ts';

export interface ProbeState {
  targetUp: boolean;
  targetIdentity: string | undefined;
  missedProbes: number;
}

export const newProbeState = (): ProbeState => ({ targetUp: true, targetIdentity: undefined, missedProbes: 0 });

/**
 * One probe of one template's target; resolves 'restarted' when another master answers (it
 * started from the file on disk: the caller reloads to apply the current config), 'back' when
 * the same master answers again after two missed probes (its CLI is away while it re-executes
 * for a reload someone else asked, seconds with 20,000 backends: it re-read the file on disk),
 * undefined otherwise.
 */
export async function probeTarget(name: string, reloader: Reloader | undefined, st: ProbeState, log: Logger, metrics: TemplaterMetrics): Promise<'restarted' | 'back' | undefined> {
  if (!reloader || reloader.kind !== 'master') return undefined;
  const p = await reloader.probe();
  if (!p.up) {
    st.missedProbes++;
    if (st.missedProbes < 2) return undefined;
    metrics.targetUp.set({ template: name }, 0);
    if (st.targetUp) log.error({ template: name, target: reloader.describe(), err: p.detail }, 'reload target is down; the last config is kept and applied when it is back');
    st.targetUp = false;
    return undefined;
  }
  st.missedProbes = 0;
  metrics.targetUp.set({ template: name }, 1);
  const restarted = st.targetIdentity !== undefined && p.identity !== st.targetIdentity;
  st.targetIdentity = p.identity;
  if (st.targetUp && !restarted) return undefined;
  log.warn({ template: name, target: reloader.describe(), detail: p.detail, restarted }, 'reload target is back; applying the current config');
  st.targetUp = true;
  return restarted ? 'restarted' : 'back';
}
