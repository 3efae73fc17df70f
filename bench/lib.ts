// The benchmark line format: one JSON object a figure, next to a baseline
// measured in the same run on the same machine.

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

export function result(r: Omit<BenchResult, 'ratio'> & { ratio?: number | null }): BenchResult {
  const ratio = r.ratio !== undefined ? r.ratio : r.baseline_value ? round(r.value / r.baseline_value, 4) : null;
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
