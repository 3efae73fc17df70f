// The runner: when the watcher says Consul changed, each template waits for
// quiet (wait min:max, as consul-template: min after the last change, never more
// than max after the first), then renders from a fresh view and applies:
//   - only instances of existing backends changed (the render without slot
//     contents is what was applied) → Runtime API, then the file is written
//     and checked without a reload;
//   - anything else → check, atomic rename, reload, confirmation, then the
//     Runtime API brings the new workers' servers to the view.
// Templates are processed one at a time, in the order given, so a hosts file is
// never ahead of the HAProxy config it points at. A failure is logged, counted
// and left behind: the last good file and the running config stay; the runner
// goes on. Template sources are watched: an edit with an error is reported and
// the last good template keeps rendering. Reload targets are probed: a target
// that went away is reported, and gets the current config when it is back.
import { createHash } from 'node:crypto';
import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import { Backoff, errorMessage, escapeLogField, type CatalogSnapshot, type Logger } from '@gantry/core';
import { compileTemplate, type CompiledTemplate } from './render/engine.ts';
import { buildView, skeletonOf, type View, type ViewOptions, type Skip } from './view.ts';
import { SlotTable } from './runtime/slots.ts';
import { RuntimeApi, type RuntimeBackend } from './runtime/runtime-api.ts';
import { applyRender, type ApplyOutcome, type ApplyTarget, type ApplyTimings } from './apply/apply.ts';
import { CommandReloader, MasterReloader, SignalReloader, type Reloader } from './apply/reload.ts';
import type { TemplateSpec } from './config.ts';
import type { TemplaterMetrics } from './metrics.ts';
import type { VipPool } from './vip/pool.ts';
import type { VipInterface } from './vip/iface.ts';

export interface SnapshotSource {
  snapshot(): CatalogSnapshot | undefined;
  onChange(fn: (s: CatalogSnapshot) => void): () => void;
  ready(): Promise<void>;
  lastError?: string | undefined;
}

export interface RunnerOptions {
  source: SnapshotSource;
  templates: readonly TemplateSpec[];
  view: ViewOptions;
  vip?: { pool: VipPool; iface?: VipInterface | undefined } | undefined;
  log: Logger;
  metrics: TemplaterMetrics;
  /** how often reload targets are probed (0: never) */
  probeIntervalMs?: number;
  reloadTimeoutMs?: number;
  /** poll interval of the template sources (0: not watched) */
  sourceWatchMs?: number;
}

interface Applied {
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

export interface TemplateStatus {
  name: string;
  destination: string;
  lastResult: string;
  lastError: string | undefined;
  lastAppliedAt: string | undefined;
  targetUp: boolean;
  pendingReload: boolean;
  templateError: string | undefined;
}

class TemplateRun {
  readonly spec: TemplateSpec;
  compiled: CompiledTemplate;
  readonly target: ApplyTarget;
  readonly runtime: RuntimeApi | undefined;
  timer: NodeJS.Timeout | undefined;
  firstChangeAt: number | undefined;
  applied: Applied | undefined;
  lastFailedHash: string | undefined;
  /** when the render whose reload failed may be tried again */
  retryAt: number | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  readonly retryBackoff = new Backoff({ baseMs: 1000, maxMs: 60_000 });
  pendingReload = false;
  targetUp = true;
  targetIdentity: string | undefined;
  missedProbes = 0;
  lastTimings: { viewMs: number; renderMs: number; skeletonMs?: number } | undefined;
  lastApplyTimings: (ApplyTimings & { syncMs?: number }) | undefined;
  status: TemplateStatus;
  sourceText: string;

  constructor(spec: TemplateSpec, compiled: CompiledTemplate, sourceText: string, reloader: Reloader | undefined) {
    this.spec = spec;
    this.compiled = compiled;
    this.sourceText = sourceText;
    this.target = { name: spec.name, destination: spec.destination, mode: spec.mode, backup: spec.backup, check: spec.check, checkTimeoutMs: spec.checkTimeoutMs, reloader };
    this.runtime = spec.runtime ? new RuntimeApi(spec.runtime) : undefined;
    this.status = { name: spec.name, destination: spec.destination, lastResult: 'pending', lastError: undefined, lastAppliedAt: undefined, targetUp: true, pendingReload: false, templateError: undefined };
  }
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

const hash = (s: string): string => createHash('sha256').update(s).digest('hex');

export class Runner {
  private readonly o: RunnerOptions;
  private readonly runs: TemplateRun[];
  private readonly slots: SlotTable;
  private chain: Promise<void> = Promise.resolve();
  private cachedView: { version: number; view: View } | undefined;
  private seenSkips = new Set<string>();
  private probeTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly log: Logger;

  constructor(o: RunnerOptions) {
    this.o = o;
    this.log = o.log;
    this.slots = new SlotTable(o.view.minSlots);
    this.runs = compileAll(o.templates).map(({ spec, compiled, text }) => new TemplateRun(spec, compiled, text, makeReloader(spec, o.reloadTimeoutMs ?? 10_000)));
  }

  statuses(): TemplateStatus[] {
    return this.runs.map((r) => ({ ...r.status, targetUp: r.targetUp, pendingReload: r.pendingReload }));
  }

  /** starts watching; changes are applied until stop() */
  start(): void {
    this.unsubscribe = this.o.source.onChange(() => { for (const r of this.runs) this.trigger(r); });
    if (this.o.source.snapshot()) for (const r of this.runs) this.trigger(r);
    const probeMs = this.o.probeIntervalMs ?? 2000;
    if (probeMs > 0) {
      this.probeTimer = setInterval(() => { void this.probe(); }, probeMs);
      this.probeTimer.unref();
    }
    const watchMs = this.o.sourceWatchMs ?? 1000;
    if (watchMs > 0) for (const r of this.runs) watchFile(r.spec.source, { interval: watchMs }, () => this.reloadSource(r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.probeTimer) clearInterval(this.probeTimer);
    for (const r of this.runs) {
      if (r.timer) clearTimeout(r.timer);
      if (r.retryTimer) clearTimeout(r.retryTimer);
      unwatchFile(r.spec.source);
    }
    await this.chain;
  }

  /** renders and applies every template once, now (no quiescence); true when all are applied */
  async once(): Promise<boolean> {
    await this.o.source.ready();
    for (const r of this.runs) await this.enqueue(r);
    return this.runs.every((r) => ['applied', 'written', 'unchanged', 'runtime'].includes(r.status.lastResult));
  }

  /** waits for what is queued (tests, shutdown) */
  idle(): Promise<void> {
    return this.chain;
  }

  private trigger(r: TemplateRun): void {
    if (this.stopped) return;
    const now = Date.now();
    r.firstChangeAt ??= now;
    if (r.timer) clearTimeout(r.timer);
    const delay = Math.max(0, Math.min(r.spec.waitMinMs, r.firstChangeAt + r.spec.waitMaxMs - now));
    r.timer = setTimeout(() => {
      r.timer = undefined;
      r.firstChangeAt = undefined;
      void this.enqueue(r);
    }, delay);
  }

  private enqueue(r: TemplateRun): Promise<void> {
    this.chain = this.chain.then(() => this.process(r)).catch((err: unknown) => {
      this.log.error({ template: r.spec.name, err: errorMessage(err) }, 'template run failed unexpectedly; going on');
    });
    return this.chain;
  }

  private async viewFor(snap: CatalogSnapshot): Promise<View> {
    if (this.cachedView?.version === snap.version) return this.cachedView.view;
    const skips = new Set<string>();
    const onSkip = (s: Skip): void => {
      const key = `${s.reason}\u0000${s.subject}`;
      if (skips.has(key)) return;
      skips.add(key);
      if (this.seenSkips.has(key)) return;
      this.o.metrics.skipped.inc({ reason: s.reason });
      this.log.warn({ reason: s.reason, service: escapeLogField(s.subject, 120), detail: s.detail }, 'left out of the view: nothing safe could be made of it');
    };
    const pool = this.o.vip?.pool;
    const view = buildView(snap, this.o.view, {
      vip: (key) => pool?.assign(key) ?? null,
      slots: (backend, instances) => this.slots.assign(backend, instances),
    }, onSkip);
    this.seenSkips = skips;
    if (pool) {
      pool.reclaimFor(0, new Set(view.tcp.map((g) => g.key)));
      try { pool.save(); } catch (err) { this.log.error({ err: errorMessage(err) }, 'cannot save VIP assignments'); }
    }
    if (this.o.vip?.iface && view.tcp.length) {
      try {
        const added = await this.o.vip.iface.ensure(view.tcp.map((g) => g.vip!));
        if (added.length) this.log.info({ vips: added }, 'VIPs added to the interface');
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'cannot add VIPs; HAProxy will not be able to bind them');
      }
    }
    this.o.metrics.services.set(view.services.length);
    this.o.metrics.instances.set(view.services.reduce((n, s) => n + s.all.length, 0));
    this.cachedView = { version: snap.version, view };
    return view;
  }

  private record(r: TemplateRun, result: string, error?: string): void {
    r.status.lastResult = result;
    r.status.lastError = error;
    this.o.metrics.renders.inc({ template: r.spec.name, result });
  }

  private async process(r: TemplateRun): Promise<void> {
    const snap = this.o.source.snapshot();
    if (!snap || this.stopped) return;
    const started = performance.now();
    const view = await this.viewFor(snap);
    const name = r.spec.name;
    const viewMs = performance.now() - started;
    let content: string;
    try {
      content = r.compiled.render(dataFor(r, view), snap.kv);
      r.lastTimings = { viewMs: Math.round(viewMs), renderMs: Math.round(performance.now() - started - viewMs) };
      this.o.metrics.templateError.set({ template: name }, 0);
      r.status.templateError = undefined;
    } catch (err) {
      this.o.metrics.templateError.set({ template: name }, 1);
      r.status.templateError = errorMessage(err);
      this.record(r, 'render_error', errorMessage(err));
      this.log.error({ template: name, err: errorMessage(err) }, 'render failed; the last good file stays');
      return;
    }
    if (!r.spec.allowEmpty && (view.services.length === 0 || content.trim() === '')) {
      this.record(r, 'empty', 'the render has no service; refused (allowEmpty to write it)');
      this.log.warn({ template: name }, 'empty render refused: Consul has no service (an election, a wiped catalog?); the last good file stays');
      return;
    }
    const h = hash(content);
    if (h === r.lastFailedHash && !r.pendingReload && (r.retryAt === undefined || Date.now() < r.retryAt)) {
      this.log.debug({ template: name }, r.retryAt === undefined ? 'same render as the one the check refused; not tried again' : 'same render as the one whose reload failed; retried later');
      return;
    }
    if (r.applied?.content === content && !r.pendingReload) return;

    // fast path: only which instance sits in which slot changed
    const structure = structureOf(view);
    if (r.runtime && r.applied && r.applied.structure === structure && !r.pendingReload && r.status.lastResult !== 'reload_failed') {
      const k0 = performance.now();
      r.applied.skeleton ??= this.renderQuiet(r, dataFor(r, skeletonOf(r.applied.view)), snap);
      const skeleton = this.renderQuiet(r, dataFor(r, skeletonOf(view, r.applied.slotCounts)), snap);
      if (r.lastTimings) r.lastTimings.skeletonMs = Math.round(performance.now() - k0);
      if (skeleton !== undefined && skeleton === r.applied.skeleton) {
        try {
          const res = await r.runtime.apply(desiredOf(view), changedBackends(r.applied, view));
          const liveMs = Math.round(performance.now() - started);
          this.o.metrics.runtimeUpdates.inc({ template: name, result: 'ok' }, 1);
          const out = await applyRender(r.target, content, { noReload: true });
          if (out.result === 'check_failed') this.reportCheck(r, out);
          this.remember(r, view, content, structure);
          this.record(r, 'runtime');
          this.o.metrics.applySeconds.observe({ template: name, path: 'runtime' }, liveMs / 1000);
          this.o.metrics.lastSuccess.set({ template: name }, Date.now() / 1000);
          r.status.lastAppliedAt = new Date().toISOString();
          this.log.info({ template: name, commands: res.commands, liveMs, ms: Math.round(performance.now() - started), ...r.lastTimings }, 'instances changed: applied through the Runtime API, no reload');
          this.pruneVips(view);
          return;
        } catch (err) {
          this.o.metrics.runtimeUpdates.inc({ template: name, result: 'error' }, 1);
          this.log.warn({ template: name, err: errorMessage(err) }, 'Runtime API update failed; reloading instead');
        }
      }
    }

    const timings: ApplyTimings & { syncMs?: number } = {};
    r.lastApplyTimings = timings;
    const force = r.pendingReload || (r.applied === undefined && r.runtime === undefined && r.target.reloader !== undefined);
    let out = await applyRender(r.target, content, { forceReload: force, timings });
    if (out.result === 'unchanged' && r.runtime && r.target.reloader) {
      // first render after a start: the file is already this one; make sure HAProxy runs it
      try {
        await r.runtime.apply(desiredOf(view));
        const running = (await r.runtime.serversState()).servers;
        const missing = view.groups.some((g) => (view.http.includes(g) || view.tcp.includes(g)) && !running.has(g.backend));
        if (missing) out = await applyRender(r.target, content, { forceReload: true });
      } catch {
        out = await applyRender(r.target, content, { forceReload: true });
      }
    }
    await this.afterApply(r, out, view, content, structure, h, started);
  }

  private async afterApply(r: TemplateRun, out: ApplyOutcome, view: View, content: string, structure: string, h: string, started: number): Promise<void> {
    const name = r.spec.name;
    switch (out.result) {
      case 'applied':
      case 'written':
      case 'unchanged': {
        const reloaded = out.result === 'applied';
        r.pendingReload = false;
        r.lastFailedHash = undefined;
        r.retryAt = undefined;
        r.retryBackoff.reset();
        if (reloaded) this.o.metrics.reloads.inc({ template: name });
        if (r.runtime && (reloaded || out.result === 'unchanged')) {
          // the new workers start from the config and the server state file: make them match the view
          const y0 = performance.now();
          const only = r.applied && out.result === 'applied' ? changedBackends(r.applied, view) : undefined;
          await r.runtime.apply(desiredOf(view), only).catch((err: unknown) => {
            this.log.warn({ template: name, err: errorMessage(err) }, 'Runtime API sync after the reload failed');
          });
          if (r.lastApplyTimings) r.lastApplyTimings.syncMs = Math.round(performance.now() - y0);
        }
        this.remember(r, view, content, structure);
        this.record(r, out.result);
        r.status.lastAppliedAt = new Date().toISOString();
        this.o.metrics.lastSuccess.set({ template: name }, Date.now() / 1000);
        this.o.metrics.applySeconds.observe({ template: name, path: reloaded ? 'reload' : 'write' }, (performance.now() - started) / 1000);
        if (out.result !== 'unchanged') this.log.info({ template: name, destination: r.spec.destination, reloaded, ms: Math.round(performance.now() - started), ...r.lastTimings, ...r.lastApplyTimings }, reloaded ? 'rendered, checked, written and reloaded' : 'rendered and written');
        this.pruneVips(view);
        return;
      }
      case 'check_failed':
        // the same content fails the same check: not tried again until Consul or the template changes
        r.lastFailedHash = h;
        r.retryAt = undefined;
        this.reportCheck(r, out);
        this.record(r, 'check_failed', out.output.slice(0, 2000));
        return;
      case 'reload_failed': {
        // a reload can fail for a while (a port still taken, a slow machine): the same content is
        // tried again with backoff and full jitter, never in a storm
        r.lastFailedHash = h;
        const delay = r.retryBackoff.next();
        r.retryAt = Date.now() + delay;
        if (r.retryTimer) clearTimeout(r.retryTimer);
        r.retryTimer = setTimeout(() => { r.retryTimer = undefined; void this.enqueue(r); }, delay + 1);
        r.retryTimer.unref();
        this.o.metrics.reloadFailures.inc({ template: name, reason: out.reason });
        this.record(r, 'reload_failed', out.message);
        this.log.error({ template: name, reason: out.reason, restored: out.restored, retryInMs: delay, err: out.message }, 'reload failed; the running config stays, the last good file is back in place');
        return;
      }
      case 'reload_pending':
        r.pendingReload = true;
        this.remember(r, view, content, structure);
        this.o.metrics.reloadFailures.inc({ template: name, reason: 'unreachable' });
        this.record(r, 'reload_pending', out.message);
        this.log.error({ template: name, err: out.message }, 'reload target does not answer; the checked file is in place and will be loaded when it is back');
        return;
      case 'write_failed':
        this.record(r, 'write_failed', out.message);
        this.log.error({ template: name, err: out.message }, 'cannot write the render; the last good file stays');
        return;
    }
  }

  private reportCheck(r: TemplateRun, out: { output: string; offending: string[] }): void {
    this.o.metrics.checkFailures.inc({ template: r.spec.name });
    this.log.error({ template: r.spec.name, destination: r.spec.destination, output: out.output.slice(0, 4000), offending: out.offending }, 'check refused the render; the last good file and the running config stay');
  }

  private renderQuiet(r: TemplateRun, view: View, snap: CatalogSnapshot): string | undefined {
    try { return r.compiled.render(view, snap.kv); } catch { return undefined; }
  }

  private remember(r: TemplateRun, view: View, content: string, structure: string): void {
    r.applied = {
      content,
      view,
      structure,
      skeleton: undefined,
      slotCounts: new Map(view.groups.map((g) => [g.backend, g.slots.length])),
      slotSig: new Map(view.groups.map((g) => [g.backend, slotSigOf(g.slots)])),
      vips: new Set(view.tcp.map((g) => g.vip!)),
    };
  }

  /** VIPs no applied render and no current view uses come off the interface */
  private pruneVips(view: View): void {
    const iface = this.o.vip?.iface;
    if (!iface) return;
    const keep = new Set(view.tcp.map((g) => g.vip!));
    for (const r of this.runs) for (const v of r.applied?.vips ?? []) keep.add(v);
    iface.prune(keep).then((removed) => {
      if (removed.length) this.log.info({ vips: removed }, 'VIPs no longer used taken off the interface');
    }, (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'cannot remove unused VIPs'));
  }

  private reloadSource(r: TemplateRun): void {
    let text: string;
    try { text = readFileSync(r.spec.source, 'utf8'); } catch (err) {
      this.log.error({ template: r.spec.name, err: errorMessage(err) }, 'template source unreadable; the last good template keeps rendering');
      return;
    }
    if (text === r.sourceText) return;
    r.sourceText = text;
    try {
      r.compiled = compileTemplate(r.spec.source, text);
    } catch (err) {
      this.o.metrics.templateError.set({ template: r.spec.name }, 1);
      r.status.templateError = errorMessage(err);
      this.log.error({ template: r.spec.name, err: errorMessage(err) }, 'edited template has an error; the last good template keeps rendering');
      return;
    }
    this.o.metrics.templateError.set({ template: r.spec.name }, 0);
    r.status.templateError = undefined;
    r.lastFailedHash = undefined;
    this.log.info({ template: r.spec.name }, 'template source changed; rendering it');
    if (r.applied) r.applied.structure = ''; // another template: no fast path against the old one
    void this.enqueue(r);
  }

  /** probes run in the queue, so never while a reload re-executes the master; two misses in a row mean down */
  private probe(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.chain = this.chain.then(() => this.probeNow()).catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'probe failed unexpectedly');
    });
    return this.chain;
  }

  private async probeNow(): Promise<void> {
    for (const r of this.runs) {
      const reloader = r.target.reloader;
      if (!reloader || reloader.kind !== 'master') continue;
      const p = await reloader.probe();
      if (!p.up) {
        r.missedProbes++;
        if (r.missedProbes < 2) continue;
        this.o.metrics.targetUp.set({ template: r.spec.name }, 0);
        if (r.targetUp) this.log.error({ template: r.spec.name, target: reloader.describe(), err: p.detail }, 'reload target is down; the last config is kept and applied when it is back');
        r.targetUp = false;
        continue;
      }
      r.missedProbes = 0;
      this.o.metrics.targetUp.set({ template: r.spec.name }, 1);
      const restarted = r.targetIdentity !== undefined && p.identity !== r.targetIdentity;
      r.targetIdentity = p.identity;
      if (!r.targetUp || restarted) {
        this.log.warn({ template: r.spec.name, target: reloader.describe(), detail: p.detail }, 'reload target is back; applying the current config');
        r.targetUp = true;
        r.pendingReload = true;
        await this.process(r);
      }
    }
  }
}

/** the view with the template's own vars over the settings */
function dataFor(r: TemplateRun, view: View): View {
  return Object.keys(r.spec.vars).length ? { ...view, settings: { ...view.settings, ...r.spec.vars } } : view;
}

/** what a change to it would need a reload for: everything but the slots */
function structureOf(view: View): string {
  const groups = view.groups.map((g) => [g.backend, g.fqdn, g.mode, g.tcpPort, g.vip, g.tenant, g.service, g.matchHosts, g.aliases, g.hosts, g.paths]);
  return JSON.stringify([groups, view.http.length, view.tcp.length, view.kv, view.settings, view.services.length]);
}

function slotSigOf(slots: readonly { name: string; address: string | null; port: number | null }[]): string {
  let sig = '';
  for (const s of slots) sig += `${s.name}=${s.address ?? ''}:${s.port ?? ''};`;
  return sig;
}

/** the backends whose slots differ from the applied view's (new ones included) */
function changedBackends(applied: Applied, view: View): Set<string> {
  const out = new Set<string>();
  for (const g of view.groups) if (applied.slotSig.get(g.backend) !== slotSigOf(g.slots)) out.add(g.backend);
  return out;
}

function desiredOf(view: View): RuntimeBackend[] {
  return [...view.http, ...view.tcp].map((g) => ({ backend: g.backend, slots: g.slots }));
}
