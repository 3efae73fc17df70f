// The benchmark line format: one JSON object a figure, next to a baseline
// measured in the same run on the same machine, doing the same work. A figure
// with no honest baseline says so: baseline_metric and baseline_value null
// (and its notes say why). The ratio is always computed here, never passed in.
import { readFileSync, statSync } from 'node:fs';

export interface BenchResult {
  suite: string;
  metric: string;
  value: number;
  unit: string;
  n: number;
  baseline_metric: string | null;
  baseline_value: number | null;
  /** value / baseline_value (null without a baseline) */
  ratio: number | null;
  notes: string;
}

/** `ratio: null`: a caller may only say that a ratio means nothing here (e.g. counts of failures), never set one */
export function result(r: Omit<BenchResult, 'ratio'> & { ratio?: null }): BenchResult {
  if ((r.baseline_metric === null) !== (r.baseline_value === null)) throw new Error(`bench ${r.suite}/${r.metric}: a baseline needs both a name and a value (or neither)`);
  if (!Number.isFinite(r.value)) throw new Error(`bench ${r.suite}/${r.metric}: no value (${r.value})`);
  const ratio = r.ratio === null || !r.baseline_value ? null : round(r.value / r.baseline_value, 4);
  return { ...r, value: round(r.value, 3), baseline_value: r.baseline_value === null ? null : round(r.baseline_value, 3), ratio };
}

export function emit(r: BenchResult): void {
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

/** The p-th percentile (0..100) of samples, nearest-rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export const TWO_CORES = 'machine: 2 cores shared by the load generator and the server';

/**
 * Whether `file` now differs from `before`, for a wait polling every few ms: the file is read only
 * once its inode, mtime or size moved (a tool renames a new file into place). Reading a
 * 20,000-service HAProxy config on every poll took a bench ~16 s of CPU a run, taken on two cores
 * from the very processes it measured.
 */
export function fileChangedFrom(file: string, before: string): () => boolean {
  // (made when `before` is read, before the change is set off: a file already replaced would be missed)
  let last = statSync(file);
  let seen = false;
  return () => {
    if (seen) return true;
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st || (st.ino === last.ino && st.mtimeMs === last.mtimeMs && st.size === last.size)) return false;
    last = st; // the same content written again: compared again only when the file moves once more
    seen = readFileSync(file, 'utf8') !== before;
    return seen;
  };
}
