// Go-style durations as Consul and consul-template write them: 500ms, 5s, 1m30s, 2h.
import { GantryError } from './errors.ts';

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds in a duration string; throws E_DURATION saying what was wrong. */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (text === '0') return 0;
  if (text === '') throw new GantryError('E_DURATION', 'empty duration (use e.g. 500ms, 5s, 1m)');
  let pos = 0;
  let total = 0;
  PART.lastIndex = 0;
  while (pos < text.length) {
    PART.lastIndex = pos;
    const m = PART.exec(text);
    if (!m) {
      throw new GantryError('E_DURATION', `invalid duration ${JSON.stringify(input)}: expected a number and a unit (ms, s, m, h) at position ${pos}`);
    }
    total += Number(m[1]) * (UNITS[m[2]!] ?? 0);
    pos = PART.lastIndex;
  }
  if (!Number.isFinite(total)) throw new GantryError('E_DURATION', `duration ${JSON.stringify(input)} is too large`);
  return total;
}

/** The shortest Go-style string for a number of milliseconds (Consul's `wait` takes this). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${Math.round(ms)}ms`;
}
