// One template's state in the runner: its compiled source, where it goes and
// how it is applied, what was applied last, and what is owed (a reload the
// target missed, a Runtime API sync that failed).
import { readFileSync } from 'node:fs';
import { Backoff } from '@gantry/core';
import { compileTemplate, type CompiledTemplate } from '../render/engine.ts';
import { RuntimeApi } from '../runtime/runtime-api.ts';
import { CommandReloader, MasterReloader, SignalReloader, type Reloader } from '../apply/reload.ts';
import { newProbeState, type ProbeState } from './probe.ts';
import type { ApplyTarget, ApplyTimings } from '../apply/apply.ts';
import type { Applied } from './apply-path.ts';
import type { Quiescence } from './quiescence.ts';
import type { TemplateSpec } from '../config.ts';
import type { CatalogSnapshot } from '@gantry/core';
import type { View } from '../view.ts';

export interface TemplateStatus {
  name: string;
  destination: string;
  lastResult: string;
  lastError: string | undefined;
  lastAppliedAt: string | undefined;
  targetUp: boolean;
  pendingReload: boolean;
  /** a Runtime API write failed after the last apply: HAProxy may differ from the render until it is retried */
  syncOwed: boolean;
  templateError: string | undefined;
}

export function makeReloader(spec: TemplateSpec, timeoutMs: number): Reloader | undefined {
  const r = spec.reload;
  if (!r) return undefined;
  if ('master' in r) return new MasterReloader({ socket: r.master, timeoutMs });
  if ('command' in r) return new CommandReloader({ command: r.command, timeoutMs });
  return new SignalReloader({ signal: r.signal, pidFile: r.pidFile });
}

/** Compiles every template source; a syntax error throws TemplateError (the command exits 2). */
export function compileAll(specs: readonly TemplateSpec[]): Array<{ spec: TemplateSpec; compiled: CompiledTemplate; text: string }> {
  return specs.map((spec) => {
    const text = readFileSync(spec.source, 'utf8');
    return { spec, compiled: compileTemplate(spec.source, text), text };
  });
}

export class TemplateRun {
  readonly spec: TemplateSpec;
  compiled: CompiledTemplate;
  readonly target: ApplyTarget;
  readonly runtime: RuntimeApi | undefined;
  quiet: Quiescence | undefined;
  applied: Applied | undefined;
  /** the host map the running HAProxy has (rendered text), when the template has one */
  appliedHostMap: string | undefined;
  lastFailedHash: string | undefined;
  /** when the render whose reload failed may be tried again */
  retryAt: number | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  readonly retryBackoff = new Backoff({ baseMs: 1000, maxMs: 60_000 });
  readonly syncBackoff = new Backoff({ baseMs: 200, maxMs: 30_000 });
  /** a render the Runtime API applied whose file is still to be checked and written */
  fileWanted: string | undefined;
  /** the background write of fileWanted, while it runs */
  fileWriter: Promise<void> | undefined;
  /** stops the check of the background write under way (a reload writes newer content) */
  fileAbort: AbortController | undefined;
  pendingReload = false;
  /** the spare pool ran out: a reload (a compact layout, the pool grown) is owed, off any change's path */
  growOwed = false;
  syncOwed = false;
  readonly probe: ProbeState = newProbeState();
  /** when the first change of the burst not yet processed arrived (performance.now()) */
  changedAt: number | undefined;
  lastTimings: { waitMs: number | undefined; viewMs: number; renderMs: number; pathMs?: number; serversMs?: number; mapMs?: number; runtime?: { serversReadMs: number; serversSendMs: number; mapReadMs: number; mapSendMs: number } } | undefined;
  lastApplyTimings: (ApplyTimings & { syncMs?: number; syncCommands?: number; preMs?: number }) | undefined;
  status: TemplateStatus;
  sourceText: string;
  /** the catalog snapshot (and its view) this template was last rendered from: a later template never renders a newer one */
  used: { snap: CatalogSnapshot; view: View } | undefined;

  constructor(spec: TemplateSpec, compiled: CompiledTemplate, sourceText: string, reloader: Reloader | undefined) {
    this.spec = spec;
    this.compiled = compiled;
    this.sourceText = sourceText;
    this.target = { name: spec.name, destination: spec.destination, mode: spec.mode, backup: spec.backup, check: spec.check, checkTimeoutMs: spec.checkTimeoutMs, reloader };
    this.runtime = spec.runtime ? new RuntimeApi(spec.runtime) : undefined;
    this.status = { name: spec.name, destination: spec.destination, lastResult: 'pending', lastError: undefined, lastAppliedAt: undefined, targetUp: true, pendingReload: false, syncOwed: false, templateError: undefined };
  }

  current(): TemplateStatus {
    return { ...this.status, targetUp: this.probe.targetUp, pendingReload: this.pendingReload, syncOwed: this.syncOwed };
  }
}
