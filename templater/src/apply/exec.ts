// Runs a check or reload command: an argv array as is, or a string through
// /bin/sh -c. `{{path}}` in either is replaced with the file to check (in a
// shell string, by "$1", so a path is never parsed as shell syntax). Never
// throws for the command's own failure: the caller decides.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** coreutils' nice, to start a background command at a lower CPU priority (none: at the same) */
const NICE = ['/usr/bin/nice', '/bin/nice'].find((p) => existsSync(p));

export type CommandSpec = string | readonly string[];

export interface ExecResult {
  ok: boolean;
  code: number | null;
  signal: string | null;
  output: string;
  timedOut: boolean;
  /** stopped by the caller's signal (its result no longer wanted) */
  aborted?: boolean;
}

const MAX_OUTPUT = 64 * 1024;

/**
 * `niceness`: start the command that much nicer (a background check must not take the CPU from
 * the change being made live); ignored where there is no `nice`.
 */
export function runCommandSpec(cmd: CommandSpec, opts: { path?: string; timeoutMs: number; env?: NodeJS.ProcessEnv; signal?: AbortSignal | undefined; niceness?: number }): Promise<ExecResult> {
  let file: string;
  let args: string[];
  if (typeof cmd === 'string') {
    file = '/bin/sh';
    args = ['-c', cmd.replaceAll('{{path}}', '"$1"'), 'gantry-templater', opts.path ?? ''];
  } else {
    [file, ...args] = cmd.map((a) => a.replaceAll('{{path}}', opts.path ?? '')) as [string, ...string[]];
  }
  if (opts.niceness && NICE) {
    args = ['-n', String(opts.niceness), file, ...args];
    file = NICE;
  }
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, detached: true });
    const add = (d: Buffer): void => { if (output.length < MAX_OUTPUT) output += d.toString('utf8'); };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, opts.timeoutMs);
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort); };
    child.on('error', (err) => {
      done();
      resolve({ ok: false, code: null, signal: null, output: `${output}${err.message}`, timedOut, aborted });
    });
    child.on('close', (code, signal) => {
      done();
      resolve({ ok: code === 0 && !timedOut && !aborted, code, signal, output: output.slice(0, MAX_OUTPUT), timedOut, aborted });
    });
  });
}
