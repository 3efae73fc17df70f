// The runner: when the watcher says Consul changed, each template waits for
// quiet (run/quiescence.ts), then renders from a fresh view and applies it by the
// path run/apply-path.ts chooses:
//   runtime — only server slots and the Host → backend map changed (instances
//             came or went, a new L7 service took a spare backend): the Runtime
//             API applies it, no reload; the file is then checked and written
//             off the change's path (the latest render only, one at a time);
//   reload  — anything else: the Runtime API first brings the running servers to
//             the render and the server-state file is saved (so the new workers
//             never start from stale addresses), then check, atomic rename,
//             reload, confirmation, and a full Runtime API sync of the new
//             workers. A sync that fails is owed, retried, and never recorded
//             as applied.
// Templates are processed one at a time, in the order given, so a hosts file is
// never ahead of the HAProxy config it points at. A failure is logged, counted
// and left behind: the last good file and the running config stay; the runner
// goes on. Template sources are watched: an edit with an error is reported and
// the last good template keeps rendering. Reload targets are probed
// (run/probe.ts): a target that went away is reported, and gets the current
// config when it is back.
import { createHash } from 'node:crypto';
import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage, escapeLogField, sleep, type CatalogSnapshot, type Logger } from '@gantry/core';
import { compileTemplate } from './render/engine.ts';
import { buildView, type HostConflict, type View, type ViewOptions, type Skip } from './view.ts';
import { SlotTable } from './runtime/slots.ts';
import { RouteTable } from './runtime/routes.ts';
import type { RuntimeResult } from './runtime/runtime-api.ts';
import { renderHostMap } from './runtime/host-map.ts';
import { applyRender, type ApplyOutcome, type ApplyTimings } from './apply/apply.ts';
import { Quiescence } from './run/quiescence.ts';
import { probeTarget } from './run/probe.ts';
import { VipKeeper } from './run/vips.ts';
import { TemplateRun, compileAll, makeReloader, type TemplateStatus } from './run/template-run.ts';
import { backendsOf, changedBackends, chooseApplyPath, remembered, structureOf, type PathChoice } from './run/apply-path.ts';
import type { TemplateSpec } from './config.ts';
import type { TemplaterMetrics } from './metrics.ts';
import type { VipPool } from './vip/pool.ts';
import type { VipInterface } from './vip/iface.ts';

export { makeReloader, compileAll, type TemplateStatus };

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
  /** spare L7 backends a config holds for new services (0: every new service reloads) */
  spares?: number;
  /** the pool is at least this many spares per 100 L7 services at each compact layout */
  sparesPercent?: number;
  log: Logger;
  metrics: TemplaterMetrics;
  /** how often reload targets are probed (0: never) */
  probeIntervalMs?: number;
  reloadTimeoutMs?: number;
  /** poll interval of the template sources (0: not watched) */
  sourceWatchMs?: number;
}

const hash = (s: string): string => createHash('sha256').update(s).digest('hex');
const OK_RESULTS = ['applied', 'written', 'unchanged', 'runtime'];

async function writeAtomic(file: string, content: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await rename(tmp, file);
}

/** where the time of a Runtime API change went (performance.now() marks, ms) */
interface LiveTimings { started: number; live: number; choiceMs: number; serversMs: number; mapMs: number; commands: number; mapCommands: number }

export class Runner {
  private readonly o: RunnerOptions;
  private readonly runs: TemplateRun[];
  private readonly slots: SlotTable;
  private readonly routes: RouteTable;
  private readonly vips: VipKeeper | undefined;
  private chain: Promise<void> = Promise.resolve();
  private cachedView: { version: number; compact: boolean; view: View } | undefined;
  private seenSkips = new Set<string>();
  private probeTimer: NodeJS.Timeout | undefined;
  private probeQueued = false;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private conflicts: HostConflict[] = [];
  private readonly log: Logger;

  constructor(o: RunnerOptions) {
    this.o = o;
    this.log = o.log;
    this.slots = new SlotTable(o.view.minSlots);
    this.routes = new RouteTable({ spares: o.spares ?? 0, perHundred: o.sparesPercent ?? 0 });
    this.vips = o.vip ? new VipKeeper({ pool: o.vip.pool, iface: o.vip.iface, log: o.log, metrics: o.metrics }) : undefined;
    this.runs = compileAll(o.templates).map(({ spec, compiled, text }) => {
      const r = new TemplateRun(spec, compiled, text, makeReloader(spec, o.reloadTimeoutMs ?? 10_000));
      r.quiet = new Quiescence({ minMs: spec.waitMinMs, maxMs: spec.waitMaxMs, fire: () => { void this.enqueue(r); } });
      return r;
    });
  }

  /** host names two services claim in the last view (for the admin endpoint and the audit drift report) */
  hostConflicts(): HostConflict[] {
    return this.conflicts;
  }

  statuses(): TemplateStatus[] {
    return this.runs.map((r) => r.current());
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
    this.vips?.stop();
    for (const r of this.runs) {
      r.quiet?.cancel();
      if (r.retryTimer) clearTimeout(r.retryTimer);
      unwatchFile(r.spec.source);
    }
    await this.chain;
    for (const r of this.runs) await r.fileWriter;
  }

  /** renders and applies every template once, now (no quiescence); true when all are applied */
  async once(): Promise<boolean> {
    await this.o.source.ready();
    for (const r of this.runs) await this.enqueue(r);
    return this.runs.every((r) => OK_RESULTS.includes(r.status.lastResult));
  }

  /** waits for what is queued, and the files it still writes (tests, shutdown) */
  async idle(): Promise<void> {
    await this.chain;
    for (const r of this.runs) await r.fileWriter;
  }

  private trigger(r: TemplateRun): void {
    if (this.stopped) return;
    r.changedAt ??= performance.now();
    r.quiet?.poke();
  }

  private enqueue(r: TemplateRun): Promise<void> {
    this.chain = this.chain.then(() => this.process(r)).catch((err: unknown) => {
      this.log.error({ template: r.spec.name, err: errorMessage(err) }, 'template run failed unexpectedly; going on');
    });
    return this.chain;
  }

  /** the view of a snapshot; compact: every L7 group in its own backend (what a reload writes) */
  private async viewFor(snap: CatalogSnapshot, compact = false): Promise<View> {
    const c = this.cachedView;
    if (c?.version === snap.version && (c.compact === compact || !compact)) return c.view;
    const skips = new Set<string>();
    const onSkip = (s: Skip): void => {
      const key = `${s.reason}\u0000${s.subject}`;
      if (skips.has(key)) return;
      skips.add(key);
      if (this.seenSkips.has(key)) return;
      this.o.metrics.skipped.inc({ reason: s.reason });
      if (s.reason === 'host_outside') this.o.metrics.hostsRefused.inc();
      this.log.warn({ reason: s.reason, service: escapeLogField(s.subject.split('\u0000')[0]!, 120), detail: s.detail }, s.reason === 'host_conflict' ? 'host name conflict: the earliest registration keeps it' : s.reason === 'host_outside' ? 'host name refused: outside the allowed domains' : 'left out of the view: nothing safe could be made of it');
    };
    const router = this.routes.router(compact);
    const view = buildView(snap, this.o.view, {
      vip: (key) => this.vips?.assign(key) ?? null,
      slots: (backend, instances) => this.slots.assign(backend, instances),
      routes: router,
    }, onSkip);
    router.used(new Set(view.http.map((g) => g.key)));
    this.seenSkips = skips;
    this.conflicts = view.hostConflicts;
    this.o.metrics.hostConflicts.set(view.hostConflicts.length);
    await this.vips?.afterView(view.tcp.map((g) => ({ key: g.key, vip: g.vip! })));
    this.o.metrics.services.set(view.services.length);
    this.o.metrics.instances.set(view.services.reduce((n, s) => n + s.all.length, 0));
    this.reportSpares();
    this.cachedView = { version: snap.version, compact, view };
    return view;
  }

  private reportSpares(): void {
    const st = this.routes.stats();
    this.o.metrics.spares.set({ state: 'total' }, st.spares);
    this.o.metrics.spares.set({ state: 'used' }, st.used);
  }

  private record(r: TemplateRun, result: string, error?: string): void {
    r.status.lastResult = result;
    r.status.lastError = error;
    this.o.metrics.renders.inc({ template: r.spec.name, result });
  }

  private renderOrReport(r: TemplateRun, view: View, snap: CatalogSnapshot): string | undefined {
    const name = r.spec.name;
    try {
      const content = r.compiled.render(dataFor(r, view), snap.kv);
      this.o.metrics.templateError.set({ template: name }, 0);
      r.status.templateError = undefined;
      return content;
    } catch (err) {
      this.o.metrics.templateError.set({ template: name }, 1);
      r.status.templateError = errorMessage(err);
      this.record(r, 'render_error', errorMessage(err));
      this.log.error({ template: name, err: errorMessage(err) }, 'render failed; the last good file stays');
      return undefined;
    }
  }

  /**
   * A template renders from the snapshot the templates before it last rendered, when that is
   * older than the watcher's (and from the very view they used: no view is rebuilt from an
   * older catalog): a change arriving while the HAProxy config reloads reaches the hosts file
   * only after it reached HAProxy. The later templates are run again once the earlier ones
   * moved on.
   */
  private async process(r: TemplateRun): Promise<void> {
    let snap = this.o.source.snapshot();
    if (!snap || this.stopped) return;
    let earlier: View | undefined;
    for (const e of this.runs) {
      if (e === r) break;
      if (e.used && e.used.snap.version < snap.version) { snap = e.used.snap; earlier = e.used.view; }
    }
    try {
      await this.processSnapshot(r, snap, earlier);
    } finally {
      const behind = this.runs.slice(this.runs.indexOf(r) + 1).filter((l) => !l.used || l.used.snap.version < snap.version);
      for (const l of behind) this.trigger(l);
    }
  }

  private async processSnapshot(r: TemplateRun, snap: CatalogSnapshot, earlier: View | undefined): Promise<void> {
    const started = performance.now();
    // from the first change of the burst (the watcher's snapshot) to this run: quiescence and the queue
    const waitMs = r.changedAt === undefined ? undefined : Math.round(started - r.changedAt);
    r.changedAt = undefined;
    let view = earlier ?? await this.viewFor(snap);
    // a new service without a spare (or with path routes) is served only after a reload, which
    // writes the compact layout: that is the only render made (at 20,000 services each costs ~0.5 s)
    if (r.runtime && !earlier && view.overflow.length > 0) view = await this.viewFor(snap, true);
    r.used = { snap, view };
    const name = r.spec.name;
    const viewMs = performance.now() - started;
    const mapFile = r.spec.runtime?.hostMap;
    const renderView = (v: View): string | undefined => { try { return r.compiled.render(dataFor(r, v), snap.kv); } catch { return undefined; } };
    // the change path between reloads, live first: when HAProxy's servers or host map are to change
    // and the render would differ from the applied one only there, the Runtime API applies the
    // change before the full render is made (that render is only the file a later reload loads;
    // at 2,000 services it costs tens of milliseconds, at 20,000 hundreds)
    let known: PathChoice | undefined;
    if (r.runtime && r.applied && !r.syncOwed && !r.pendingReload && !r.growOwed && OK_RESULTS.includes(r.status.lastResult)
      && view.overflow.length === 0 && view.services.length > 0 && structureOf(view) === r.applied.structure) {
      const hostMapText = mapFile ? renderHostMap(view.hostMap) : undefined;
      const changed = changedBackends(r.applied, view);
      if (changed.size > 0 || hostMapText !== r.appliedHostMap) {
        const c0 = performance.now();
        known = chooseApplyPath({ applied: r.applied, view, hasRuntime: true, reloadOwed: false, render: renderView });
        const choiceMs = performance.now() - c0;
        if (known.path === 'runtime') {
          r.lastTimings = { waitMs, viewMs: Math.round(viewMs), renderMs: 0 };
          try {
            const t = await this.applyLive(r, view, changed, hostMapText, started, choiceMs);
            const r0 = performance.now();
            const content = this.renderOrReport(r, view, snap);
            r.lastTimings.renderMs = Math.round(performance.now() - r0);
            this.runtimeApplied(r, view, content, hostMapText, t);
            return;
          } catch (err) {
            this.o.metrics.runtimeUpdates.inc({ template: name, result: 'error' }, 1);
            this.log.warn({ template: name, err: errorMessage(err) }, 'Runtime API update failed; reloading instead');
            known = { path: 'reload', reason: 'the Runtime API failed' };
          }
        }
      }
    }
    let content = this.renderOrReport(r, view, snap);
    if (content === undefined) return;
    r.lastTimings = { waitMs, viewMs: Math.round(viewMs), renderMs: Math.round(performance.now() - started - viewMs) };
    if (!r.spec.allowEmpty && (view.services.length === 0 || content.trim() === '')) {
      this.record(r, 'empty', 'the render has no service; refused (allowEmpty to write it)');
      this.log.warn({ template: name }, 'empty render refused: Consul has no service (an election, a wiped catalog?); the last good file stays');
      return;
    }
    let hostMap = mapFile ? renderHostMap(view.hostMap) : undefined;
    const h = hash(content + (hostMap ?? ''));
    if (h === r.lastFailedHash && !r.pendingReload && (r.retryAt === undefined || Date.now() < r.retryAt)) {
      this.log.debug({ template: name }, r.retryAt === undefined ? 'same render as the one the check refused; not tried again' : 'same render as the one whose reload failed; retried later');
      return;
    }
    // an overflow group is in neither the render nor the map until the compact reload: not "unchanged"
    if (r.applied?.content === content && r.appliedHostMap === hostMap && !r.pendingReload && !r.growOwed && view.overflow.length === 0) {
      if (r.syncOwed) await this.sync(r, view, started);
      return;
    }

    const c0 = performance.now();
    // (the live-first path above already chose: a reload, or the Runtime API that failed)
    const choice = known ?? chooseApplyPath({
      applied: r.applied, view, hasRuntime: r.runtime !== undefined, reloadOwed: r.pendingReload || r.growOwed || r.status.lastResult === 'reload_failed',
      render: renderView,
    });
    const choiceMs = performance.now() - c0;
    if (choice.path === 'runtime' && r.runtime && r.applied) {
      try {
        // a sync owed (a failed one, a master that re-read its files): every backend and the whole map
        const t = await this.applyLive(r, view, r.syncOwed ? undefined : changedBackends(r.applied, view), hostMap, started, choiceMs);
        this.runtimeApplied(r, view, content, hostMap, t);
        return;
      } catch (err) {
        this.o.metrics.runtimeUpdates.inc({ template: name, result: 'error' }, 1);
        this.log.warn({ template: name, err: errorMessage(err) }, 'Runtime API update failed; reloading instead');
      }
    } else if (r.applied && r.runtime) {
      this.log.debug({ template: name, reason: choice.path === 'reload' ? choice.reason : 'runtime failed' }, 'reload path');
    }

    // reload path: every L7 group in its own backend, the spares empty (and grown if they ran out),
    // retired backends dropped
    if (r.runtime && view.overflow.length + view.retired.length + view.spares.filter((s) => s.group !== null).length > 0) {
      view = await this.viewFor(snap, true);
      r.used = { snap, view };
      content = this.renderOrReport(r, view, snap);
      if (content === undefined) return;
      hostMap = mapFile ? renderHostMap(view.hostMap) : undefined;
    }
    const timings: ApplyTimings & { syncMs?: number; syncCommands?: number; preMs?: number } = {};
    r.lastApplyTimings = timings;
    if (mapFile && hostMap !== undefined) {
      try { await writeAtomic(mapFile, hostMap); } catch (err) {
        this.record(r, 'write_failed', errorMessage(err));
        this.log.error({ template: name, err: errorMessage(err) }, 'cannot write the host map; the last good files stay');
        return;
      }
    }
    await this.settleFile(r);
    let pre: Promise<void> | undefined;
    if (r.runtime && r.applied && r.target.reloader) {
      // the new workers start from the server-state file: make the running servers match the render
      // and save them before the reload, so no backend comes back on the addresses of an older
      // state; done while the file is checked (at 20,000 backends each takes over a second)
      const p0 = performance.now();
      const [rt, v] = [r.runtime, view];
      const changed = changedBackends(r.applied, v);
      pre = (async () => {
        try {
          // no server to change and none changed since the state file was written: it is current
          // (at 20,000 backends reading the servers for it takes a second)
          if (changed.size === 0 && await rt.stateSaved()) return;
          await rt.applyAndSave(backendsOf(v, false), changed);
        } catch (err) {
          // the file the new workers would start from is older than the render: they start from the render
          const dropped = await rt.dropStateFile().then(() => true, () => false);
          this.log.warn({ template: name, err: errorMessage(err), stateFileRemoved: dropped }, 'Runtime API before the reload failed; the new workers start from the render, not from the older server-state file, and the sync after the reload brings the rest');
        }
        timings.preMs = Math.round(performance.now() - p0);
      })();
    }
    const force = r.pendingReload || (r.applied === undefined && r.runtime === undefined && r.target.reloader !== undefined);
    let out = await applyRender(r.target, content, { forceReload: force, timings, beforeReload: pre });
    await pre;
    if (out.result === 'unchanged' && r.runtime && r.target.reloader && !r.applied) {
      // first render after a start: the file is already this one; make sure HAProxy runs it
      try {
        const running = (await r.runtime.serversState()).servers;
        const missing = backendsOf(view).some((b) => !running.has(b.backend));
        if (missing) out = await applyRender(r.target, content, { forceReload: true });
      } catch {
        out = await applyRender(r.target, content, { forceReload: true });
      }
    }
    await this.afterApply(r, out, view, content, hostMap, h, started);
  }

  /**
   * Makes a change live through the Runtime API: the servers of `changed` (every backend when
   * undefined: a sync owed, which also reads the map in full), then the host map when it differs
   * (its file written for a later reload), then the server-state save (its dump would hold the
   * map's commands back). Throws when HAProxy refuses or cannot be reached.
   */
  private async applyLive(r: TemplateRun, view: View, changed: ReadonlySet<string> | undefined, hostMap: string | undefined, started: number, choiceMs: number): Promise<LiveTimings> {
    const rt = r.runtime!;
    const mapFile = r.spec.runtime?.hostMap;
    const full = changed === undefined;
    const s0 = performance.now();
    const res = await rt.apply(backendsOf(view), changed, 'refuse', { saveLater: true });
    const s1 = performance.now();
    let mapRes: RuntimeResult | undefined;
    if (mapFile && (hostMap !== r.appliedHostMap || full)) {
      mapRes = await rt.applyHostMap(mapFile, view.hostMap, !full);
      await writeAtomic(mapFile, hostMap!);
    }
    const live = performance.now();
    if (res.commands > 0) rt.scheduleSave();
    r.lastTimings!.runtime = { serversReadMs: Math.round(res.readMs ?? 0), serversSendMs: Math.round(res.sendMs ?? 0), mapReadMs: Math.round(mapRes?.readMs ?? 0), mapSendMs: Math.round(mapRes?.sendMs ?? 0) };
    return { started, live, choiceMs, serversMs: s1 - s0, mapMs: live - s1, commands: res.commands, mapCommands: mapRes?.commands ?? 0 };
  }

  /**
   * A change the Runtime API made live: what is remembered, recorded and logged; the file written
   * off the change's path. `content` undefined: the full render failed after the change went live
   * (the template failed on it, reported): HAProxy runs the change, the file stays the last good one.
   */
  private runtimeApplied(r: TemplateRun, view: View, content: string | undefined, hostMap: string | undefined,
    t: LiveTimings): void {
    const name = r.spec.name;
    const liveMs = Math.round(t.live - t.started);
    // the Runtime API's share: the servers (read the changed backends, set), the map (set, file written)
    r.lastTimings = { ...r.lastTimings!, pathMs: Math.round(t.choiceMs), serversMs: Math.round(t.serversMs), mapMs: Math.round(t.mapMs) };
    this.o.metrics.runtimeUpdates.inc({ template: name, result: 'ok' }, 1);
    this.o.metrics.applySeconds.observe({ template: name, path: 'runtime' }, liveMs / 1000);
    r.appliedHostMap = hostMap;
    r.syncOwed = false;
    r.status.lastAppliedAt = new Date().toISOString();
    if (content === undefined) {
      r.applied = remembered(view, r.applied!.content);
      this.log.error({ template: name, liveMs }, 'the change is live through the Runtime API, but the full render failed: the file stays the last good one');
    } else {
      this.writeLater(r, content);
      r.applied = remembered(view, content);
      this.record(r, 'runtime');
      this.o.metrics.lastSuccess.set({ template: name }, Date.now() / 1000);
    }
    this.log.info({ template: name, commands: t.commands, mapCommands: t.mapCommands, spares: this.routes.stats(), liveMs, ms: Math.round(performance.now() - t.started), ...r.lastTimings }, 'applied through the Runtime API, no reload');
    this.pruneVips(view);
    if (!r.growOwed && this.routes.ranOut()) {
      // the last spare was just taken: the reload that grows the pool is made now, after this
      // change is live, not on the path of the next new service
      r.growOwed = true;
      this.log.info({ template: name, spares: this.routes.stats() }, 'spare backends used up: reloading now to grow the pool');
      void this.enqueue(r);
    }
  }

  /**
   * After a Runtime API apply the change is live; the file (what a later reload loads) is
   * checked and written off the change's path, so the next change never waits for a check.
   * One write at a time, and only the latest content: a burst costs one check.
   */
  private writeLater(r: TemplateRun, content: string): void {
    r.fileWanted = content;
    r.fileWriter ??= (async () => {
      while (r.fileWanted !== undefined) {
        const c = r.fileWanted;
        r.fileWanted = undefined;
        const abort = new AbortController();
        r.fileAbort = abort;
        const out = await applyRender(r.target, c, { noReload: true, signal: abort.signal }).catch((err: unknown): ApplyOutcome => ({ result: 'write_failed', message: errorMessage(err) }));
        r.fileAbort = undefined;
        if (out.result === 'check_failed') this.reportCheck(r, out);
        else if (out.result === 'write_failed') this.log.error({ template: r.spec.name, err: out.message }, 'cannot write the render after a Runtime API apply; HAProxy runs it, the file on disk is older');
      }
    })().finally(() => { r.fileWriter = undefined; });
  }

  /**
   * a file write still owed by the Runtime API path is dropped, and one under way stopped while
   * its check runs (the reload path checks and writes its own, newer content: a reload right
   * after a Runtime API apply, as when the spare pool runs out, waits for no older check)
   */
  private async settleFile(r: TemplateRun): Promise<void> {
    r.fileWanted = undefined;
    r.fileAbort?.abort();
    await r.fileWriter;
  }

  /** a full Runtime API sync (every backend, the host map); a failure is owed and retried, never recorded as applied */
  private async sync(r: TemplateRun, view: View, started: number): Promise<boolean> {
    if (!r.runtime) return true;
    const name = r.spec.name;
    const y0 = performance.now();
    try {
      const mapFile = r.spec.runtime?.hostMap;
      // right after a reload the new worker may not answer on the admin socket for a moment
      for (let attempt = 1; ; attempt++) {
        try {
          const servers = await r.runtime.apply(backendsOf(view), undefined, 'skip');
          const map = mapFile ? await r.runtime.applyHostMap(mapFile, view.hostMap) : undefined;
          if (r.lastApplyTimings) r.lastApplyTimings.syncCommands = servers.commands + (map?.commands ?? 0);
          break;
        } catch (err) {
          if (attempt >= 3) throw err;
          await sleep(50 * attempt);
        }
      }
      if (r.lastApplyTimings) r.lastApplyTimings.syncMs = Math.round(performance.now() - y0);
      if (r.syncOwed) {
        this.log.info({ template: name, ms: Math.round(performance.now() - started) }, 'owed Runtime API sync done: HAProxy matches the render');
        this.record(r, 'runtime');
      }
      r.syncOwed = false;
      r.syncBackoff.reset();
      return true;
    } catch (err) {
      r.syncOwed = true;
      const delay = r.syncBackoff.next();
      if (r.retryTimer) clearTimeout(r.retryTimer);
      r.retryTimer = setTimeout(() => { r.retryTimer = undefined; void this.enqueue(r); }, delay + 1);
      r.retryTimer.unref();
      this.o.metrics.runtimeUpdates.inc({ template: name, result: 'error' }, 1);
      this.record(r, 'sync_failed', errorMessage(err));
      this.log.error({ template: name, err: errorMessage(err), retryInMs: delay }, 'Runtime API sync failed: HAProxy may differ from the render; not recorded as applied, retried');
      return false;
    }
  }

  private async afterApply(r: TemplateRun, out: ApplyOutcome, view: View, content: string, hostMap: string | undefined, h: string, started: number): Promise<void> {
    const name = r.spec.name;
    switch (out.result) {
      case 'applied':
      case 'written':
      case 'unchanged': {
        const reloaded = out.result === 'applied';
        r.pendingReload = false;
        r.growOwed = false;
        r.lastFailedHash = undefined;
        r.retryAt = undefined;
        r.retryBackoff.reset();
        if (reloaded) this.o.metrics.reloads.inc({ template: name });
        if (r.runtime && r.target.reloader && (reloaded || out.result === 'unchanged')) {
          // a config with this view's backends and spares runs: new services take spares from here on
          this.routes.commit(view.l7Backends.map((g) => g.key), view.spares.length);
          this.reportSpares();
          if (this.cachedView && this.cachedView.view !== view) this.cachedView = { ...this.cachedView, compact: true, view };
        }
        r.applied = remembered(view, content);
        r.appliedHostMap = hostMap;
        let synced = true;
        if (r.runtime && (reloaded || out.result === 'unchanged')) synced = await this.sync(r, view, started);
        if (synced) this.record(r, out.result);
        r.status.lastAppliedAt = new Date().toISOString();
        this.o.metrics.lastSuccess.set({ template: name }, Date.now() / 1000);
        this.o.metrics.applySeconds.observe({ template: name, path: reloaded ? 'reload' : 'write' }, (performance.now() - started) / 1000);
        if (out.result !== 'unchanged') this.log.info({ template: name, destination: r.spec.destination, reloaded, spares: this.routes.stats(), ms: Math.round(performance.now() - started), ...r.lastTimings, ...r.lastApplyTimings }, reloaded ? 'rendered, checked, written and reloaded' : 'rendered and written');
        this.pruneVips(view);
        return;
      }
      case 'check_failed':
        // the same content fails the same check: not tried again until Consul or the template changes;
        // a grow of the spare pool it was is dropped (otherwise every later change would take the
        // reload path, each refused the same way): the next new service without a spare asks again
        r.lastFailedHash = h;
        r.growOwed = false;
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
        r.applied = remembered(view, content);
        r.appliedHostMap = hostMap;
        this.routes.reset();
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

  /** VIPs no applied render and no current view uses come off the interface */
  private pruneVips(view: View): void {
    const keep = new Set(view.tcp.map((g) => g.vip!));
    for (const r of this.runs) for (const v of r.applied?.vips ?? []) keep.add(v);
    this.vips?.prune(keep);
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

  /**
   * probes run in the queue, so never while a reload re-executes the master; one at a time: a
   * master that does not answer makes each probe wait for its timeout (3 s), and probes queued
   * every interval would pile up ahead of every change
   */
  private probe(): Promise<void> {
    if (this.stopped || this.probeQueued) return Promise.resolve();
    this.probeQueued = true;
    this.chain = this.chain.then(async () => {
      for (const r of this.runs) {
        const seen = await probeTarget(r.spec.name, r.target.reloader, r.probe, this.log, this.o.metrics);
        if (!seen) {
          // a reload owed (the master did not answer it in time) while probes find the master up:
          // tried again at each probe, not left until the next change
          if (r.pendingReload && r.probe.targetUp && r.target.reloader?.kind === 'master') await this.process(r);
          continue;
        }
        if (seen === 'back' && r.runtime && !r.pendingReload) {
          // the same master: it re-read the file on disk, which is the last one applied (no reload
          // is owed); its servers may have started from an older server-state file, so they are
          // synced through the Runtime API — no reload of our own on top of someone else's
          r.syncOwed = true;
        } else {
          // restarted from the file on disk, or a reload owed: it gets the current config by a reload
          r.pendingReload = true;
          if (r.runtime) this.routes.reset();
        }
        r.runtime?.forgetState();
        await this.process(r);
      }
    }).catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'probe failed unexpectedly');
    }).finally(() => { this.probeQueued = false; });
    return this.chain;
  }
}

/** the view with the template's own vars over the settings */
function dataFor(r: TemplateRun, view: View): View {
  return Object.keys(r.spec.vars).length ? { ...view, settings: { ...view.settings, ...r.spec.vars } } : view;
}
