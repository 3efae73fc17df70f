// The check before a render replaces anything: the check command (typically
// `haproxy -c -f {{path}}`) runs on the temporary file. When it fails, its
// output is returned with the lines of the render it points at
// (`parsing [file:LINE]`, `file:LINE`), so the log says what was wrong and where.
import { escapeLogField } from '@gantry/core';
import { runCommandSpec, type CommandSpec } from './exec.ts';

export interface CheckResult {
  ok: boolean;
  /** the command's output, the temporary path replaced by the destination's */
  output: string;
  /** "line N: <text>" for each line of the render the output names */
  offending: string[];
  /** stopped by the caller (neither passed nor refused) */
  aborted?: boolean;
}

export function offendingLines(output: string, tmpPath: string, content: string): string[] {
  const lines = content.split('\n');
  const seen = new Set<number>();
  const escaped = tmpPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`${escaped}:(\\d+)`, 'g');
  for (const m of output.matchAll(re)) seen.add(Number(m[1]));
  return [...seen].sort((a, b) => a - b).slice(0, 20).map((n) => `line ${n}: ${escapeLogField(lines[n - 1] ?? '', 200)}`);
}

export async function checkFile(cmd: CommandSpec, tmpPath: string, dest: string, content: string, timeoutMs: number, signal?: AbortSignal, niceness?: number): Promise<CheckResult> {
  const r = await runCommandSpec(cmd, { path: tmpPath, timeoutMs, signal, ...(niceness ? { niceness } : {}) });
  if (r.aborted) return { ok: false, aborted: true, output: 'check stopped: its file is no longer wanted', offending: [] };
  const offending = r.ok ? [] : offendingLines(r.output, tmpPath, content);
  const why = r.timedOut ? `\n(check timed out after ${timeoutMs} ms)` : r.code === null && !r.ok ? '' : '';
  return { ok: r.ok, output: `${r.output.replaceAll(tmpPath, dest).trim()}${why}`, offending };
}
