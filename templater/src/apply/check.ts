// The check before a render replaces anything: the check command (typically
// `haproxy -c -f {{path}}`) runs on the temporary file. When it fails, its
// output is returned with the lines of the render it points at
// (`parsing [file:LINE]`, `file:LINE`), so the log says what was wrong and where.
// The command runs with glibc's malloc asked to use transparent huge pages
// (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) unless the templater's own environment
// sets GLIBC_TUNABLES: a check parses the whole file into fresh memory, and at
// 20,000 backends `haproxy -c` spends most of its time in page faults (see
// checkEnv). Where glibc or the kernel lacks the feature the variable does nothing.
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

/** the check command's environment: the templater's, with huge pages for glibc's malloc unless GLIBC_TUNABLES is set */
export function checkEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return base.GLIBC_TUNABLES === undefined ? { ...base, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' } : base;
}

export async function checkFile(cmd: CommandSpec, tmpPath: string, dest: string, content: string, timeoutMs: number, signal?: AbortSignal, niceness?: number): Promise<CheckResult> {
  const r = await runCommandSpec(cmd, { path: tmpPath, timeoutMs, signal, env: checkEnv(), ...(niceness ? { niceness } : {}) });
  if (r.aborted) return { ok: false, aborted: true, output: 'check stopped: its file is no longer wanted', offending: [] };
  const offending = r.ok ? [] : offendingLines(r.output, tmpPath, content);
  const why = r.timedOut ? `\n(check timed out after ${timeoutMs} ms)` : r.code === null && !r.ok ? '' : '';
  return { ok: r.ok, output: `${r.output.replaceAll(tmpPath, dest).trim()}${why}`, offending };
}
