// How a target picks up a new file, and how we know it did:
//   master  — HAProxy's master CLI: `reload`, then `show proc` until the master's
//             reload count moved and a new worker runs (2.6's `reload` prints
//             nothing), or until `[failed: N]` says the new config was refused;
//   command — any command; exit status 0 is success;
//   signal  — a signal to the pid in a pid file (SIGHUP to dnsmasq).
// A failure is reported with a reason, never thrown past the runner: the
// templater goes on (consul-template #71, #508).
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { GantryError, errorMessage, sleep } from '@gantry/core';
import { cliRequest } from '../runtime/socket.ts';
import { runCommandSpec, type CommandSpec } from './exec.ts';

export type ReloadFailure = 'unreachable' | 'rejected' | 'timeout' | 'command_failed';

export class ReloadError extends GantryError {
  readonly reason: ReloadFailure;
  constructor(reason: ReloadFailure, message: string) {
    super('E_RELOAD', message);
    this.reason = reason;
  }
}

export interface Reloader {
  readonly kind: 'master' | 'command' | 'signal';
  describe(): string;
  reload(): Promise<void>;
  /** whether the target answers (master only; others: always true) */
  probe(): Promise<{ up: boolean; identity?: string; detail?: string }>;
}

export interface ProcInfo {
  masterPid: number;
  reloads: number;
  failed: number;
  workers: number[];
  oldWorkers: number[];
}

/** `show proc` of HAProxy 2.6+ */
export function parseShowProc(text: string): ProcInfo {
  let section = 'master';
  const info: ProcInfo = { masterPid: -1, reloads: -1, failed: 0, workers: [], oldWorkers: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith('# workers')) { section = 'workers'; continue; }
    if (line.startsWith('# old workers')) { section = 'old'; continue; }
    if (line.startsWith('# programs')) { section = 'programs'; continue; }
    if (line.startsWith('#') || !line.trim()) continue;
    const cols = line.trim().split(/\s+/);
    const pid = Number(cols[0]);
    if (cols[1] === 'master') {
      info.masterPid = pid;
      info.reloads = Number(cols[2]);
      const f = /\[failed: (\d+)\]/.exec(line);
      info.failed = f ? Number(f[1]) : 0;
    } else if (section === 'workers' && Number.isFinite(pid)) info.workers.push(pid);
    else if (section === 'old' && Number.isFinite(pid)) info.oldWorkers.push(pid);
  }
  if (info.masterPid < 0) throw new GantryError('E_HAPROXY_COMMAND', `show proc: no master line in ${JSON.stringify(text.slice(0, 200))}`);
  return info;
}

export class MasterReloader implements Reloader {
  readonly kind = 'master' as const;
  private readonly socket: string;
  private readonly timeoutMs: number;
  constructor(opts: { socket: string; timeoutMs?: number }) {
    this.socket = opts.socket;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  describe(): string { return `HAProxy master CLI ${this.socket}`; }

  async showProc(): Promise<ProcInfo> {
    return parseShowProc(await cliRequest(this.socket, 'show proc', 3000));
  }

  async probe(): Promise<{ up: boolean; identity?: string; detail?: string }> {
    try {
      const p = await this.showProc();
      return { up: true, identity: String(p.masterPid), detail: `master ${p.masterPid}, workers ${p.workers.join(',')}` };
    } catch (err) {
      return { up: false, detail: errorMessage(err) };
    }
  }

  async reload(): Promise<void> {
    let before: ProcInfo;
    try {
      before = await this.showProc();
    } catch (err) {
      throw new ReloadError('unreachable', `${this.describe()}: ${errorMessage(err)}`);
    }
    // the master re-executes itself: the connection may close without an answer
    await cliRequest(this.socket, 'reload', 5000).catch(() => undefined);
    const deadline = Date.now() + this.timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      await sleep(10);
      let after: ProcInfo;
      try {
        after = await this.showProc();
      } catch (err) {
        last = errorMessage(err);
        continue; // re-executing
      }
      if (after.masterPid !== before.masterPid) return; // restarted from the file on disk
      if (after.reloads > before.reloads) {
        if (after.failed > 0) throw new ReloadError('rejected', `${this.describe()}: HAProxy refused the new config (show proc: failed ${after.failed}); the old workers keep serving`);
        if (after.workers.some((p) => !before.workers.includes(p))) return;
      }
      last = `reloads ${after.reloads} (before ${before.reloads}), workers ${after.workers.join(',')}`;
    }
    throw new ReloadError('timeout', `${this.describe()}: reload not confirmed in ${this.timeoutMs} ms (${last})`);
  }
}

export class CommandReloader implements Reloader {
  readonly kind = 'command' as const;
  private readonly cmd: CommandSpec;
  private readonly timeoutMs: number;
  constructor(opts: { command: CommandSpec; timeoutMs?: number }) {
    this.cmd = opts.command;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }
  describe(): string { return `command ${JSON.stringify(this.cmd)}`; }
  async probe(): Promise<{ up: boolean }> { return { up: true }; }
  async reload(): Promise<void> {
    const r = await runCommandSpec(this.cmd, { timeoutMs: this.timeoutMs });
    if (!r.ok) {
      throw new ReloadError('command_failed', `${this.describe()}: ${r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`}: ${r.output.trim().slice(0, 500)}`);
    }
  }
}

export class SignalReloader implements Reloader {
  readonly kind = 'signal' as const;
  private readonly signal: NodeJS.Signals;
  private readonly pidFile: string;
  constructor(opts: { signal: string; pidFile: string }) {
    const sig = opts.signal.toUpperCase().startsWith('SIG') ? opts.signal.toUpperCase() : `SIG${opts.signal.toUpperCase()}`;
    if (!(sig in constants.signals)) throw new GantryError('E_CONFIG', `unknown signal ${JSON.stringify(opts.signal)}`);
    this.signal = sig as NodeJS.Signals;
    this.pidFile = opts.pidFile;
  }
  describe(): string { return `${this.signal} to the pid in ${this.pidFile}`; }
  private async pid(): Promise<number> {
    const text = await readFile(this.pidFile, 'utf8').catch((err: unknown) => {
      throw new ReloadError('unreachable', `${this.describe()}: ${errorMessage(err)}`);
    });
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new ReloadError('unreachable', `${this.describe()}: no pid in the file`);
    return pid;
  }
  async probe(): Promise<{ up: boolean; identity?: string; detail?: string }> {
    try {
      const pid = await this.pid();
      process.kill(pid, 0);
      return { up: true, identity: String(pid) };
    } catch (err) {
      return { up: false, detail: errorMessage(err) };
    }
  }
  async reload(): Promise<void> {
    const pid = await this.pid();
    try {
      process.kill(pid, this.signal);
    } catch (err) {
      throw new ReloadError('unreachable', `${this.describe()}: ${errorMessage(err)}`);
    }
  }
}
