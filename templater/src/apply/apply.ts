// One render to its destination, never making things worse:
//   empty render refused (unless allowed) → temporary file → check command →
//   backup of the last good file → atomic rename → reload and its confirmation.
// A check failure leaves the destination untouched. A reload the target refused
// puts the last good file back (the running process still has it). A target
// that does not answer keeps the new, checked file, and the reload is retried
// when it is back.
import { errorMessage } from '@gantry/core';
import { backup, readIfExists, removeQuietly, replace, restoreBackup, writeTemp } from './files.ts';
import { checkFile } from './check.ts';
import { ReloadError, type ReloadFailure, type Reloader } from './reload.ts';
import type { CommandSpec } from './exec.ts';

export interface ApplyTarget {
  name: string;
  destination: string;
  mode: number;
  backup: boolean;
  check?: CommandSpec | undefined;
  checkTimeoutMs: number;
  reloader?: Reloader | undefined;
}

export type ApplyOutcome =
  | { result: 'unchanged' }
  | { result: 'written' }
  | { result: 'applied' }
  | { result: 'check_failed'; output: string; offending: string[] }
  | { result: 'reload_failed'; reason: ReloadFailure; message: string; restored: boolean }
  | { result: 'reload_pending'; message: string }
  | { result: 'write_failed'; message: string }
  /** stopped by the caller's signal before anything was written */
  | { result: 'aborted' };

/** how much nicer a background check runs (`nice -n`) */
const BACKGROUND_NICENESS = 10;

/** where the time of an apply went, in ms (filled as it goes) */
export interface ApplyTimings { checkMs?: number; writeMs?: number; reloadMs?: number }

export interface ApplyOptions {
  timings?: ApplyTimings;
  /** write and check, but do not reload (the Runtime API already made the change) */
  noReload?: boolean;
  /** reload even when the file on disk already has this content */
  forceReload?: boolean;
  /**
   * work started by the caller that must be done before the reload is sent (the Runtime API
   * making the running servers match and saving their state): it runs while the file is checked
   * and written; its failure is the caller's to handle, it never stops the apply
   */
  beforeReload?: Promise<unknown> | undefined;
  /** stops the check (a write whose content a newer one replaces): nothing is written */
  signal?: AbortSignal | undefined;
}

export async function applyRender(t: ApplyTarget, content: string, opts: ApplyOptions = {}): Promise<ApplyOutcome> {
  const current = await readIfExists(t.destination).catch(() => undefined);
  if (current === content) {
    if (!opts.forceReload || opts.noReload || !t.reloader) return { result: 'unchanged' };
    await settled(opts.beforeReload);
    return reloadOnly(t, false);
  }
  let tmp: string;
  try {
    tmp = await writeTemp(t.destination, content, t.mode);
  } catch (err) {
    return { result: 'write_failed', message: errorMessage(err) };
  }
  const timings = opts.timings ?? {};
  if (t.check) {
    const c0 = performance.now();
    // the check of a file the Runtime API already made live runs in the background: nicer, so
    // the next change's own work (render, Runtime API) is not slowed by it on a busy machine
    const c = await checkFile(t.check, tmp, t.destination, content, t.checkTimeoutMs, opts.signal, opts.noReload ? BACKGROUND_NICENESS : undefined);
    timings.checkMs = Math.round(performance.now() - c0);
    if (c.aborted || opts.signal?.aborted) {
      await removeQuietly(tmp);
      return { result: 'aborted' };
    }
    if (!c.ok) {
      await removeQuietly(tmp);
      return { result: 'check_failed', output: c.output, offending: c.offending };
    }
  }
  let backedUp = false;
  try {
    if (t.backup) backedUp = await backup(t.destination);
    await replace(tmp, t.destination);
  } catch (err) {
    await removeQuietly(tmp);
    return { result: 'write_failed', message: errorMessage(err) };
  }
  if (!t.reloader || opts.noReload) return { result: 'written' };
  await settled(opts.beforeReload);
  const r0 = performance.now();
  const out = await reloadOnly(t, backedUp);
  timings.reloadMs = Math.round(performance.now() - r0);
  return out;
}

async function settled(p: Promise<unknown> | undefined): Promise<void> {
  if (p) await p.catch(() => undefined);
}

async function reloadOnly(t: ApplyTarget, canRestore: boolean): Promise<ApplyOutcome> {
  try {
    await t.reloader!.reload();
    return { result: 'applied' };
  } catch (err) {
    const reason: ReloadFailure = err instanceof ReloadError ? err.reason : 'command_failed';
    const message = errorMessage(err);
    if (reason === 'unreachable') return { result: 'reload_pending', message };
    // the target refused it: the file on disk goes back to the last good one
    const restored = canRestore && t.backup ? await restoreBackup(t.destination).catch(() => false) : false;
    return { result: 'reload_failed', reason, message, restored };
  }
}

export async function reloadPending(t: ApplyTarget): Promise<ApplyOutcome> {
  return reloadOnly(t, false);
}
