// Runs a `gantry <command>` as a real child process (so tests can SIGKILL it),
// with its JSON log kept in a file and parsed on demand.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { repoRoot } from './bins.ts';
import { spawnEngine, tempDir, freePort, waitUntil, removeDir, type ManagedProcess } from './process.ts';

/** the node flags `gantry` runs with (see cli/bin/gantry.js) */
export const GANTRY_NODE_FLAGS = ['--max-semi-space-size=2'];
/** the flags `gantry gateway` re-executes itself with (a larger young generation, see cli/bin/gantry.js) */
export const GATEWAY_NODE_FLAGS = ['--max-semi-space-size=16'];

export interface GantryProcess {
  proc: ManagedProcess;
  readonly adminUrl: string;
  readonly dir: string;
  /** every JSON log line so far */
  logs(): Array<Record<string, unknown>>;
  /** start again with the same arguments (after kill/stop) */
  restart(): Promise<void>;
  kill(): Promise<void>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

/** `hostname`: run it in a UTS namespace of its own under this host name (as a re-created container would be) */
export async function startGantry(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; waitHealthy?: boolean; hostname?: string } = {}): Promise<GantryProcess> {
  const dir = tempDir(`gantry-${command}`);
  const port = await freePort();
  const adminUrl = `http://127.0.0.1:${port}`;
  const logFile = join(dir, `${command}.log`);
  const launch = async (): Promise<ManagedProcess> => {
    const argv = [process.execPath, ...GANTRY_NODE_FLAGS, join(repoRoot, 'cli', 'bin', 'gantry.js'), command, '--admin-addr', `127.0.0.1:${port}`, ...args];
    const wrapped = opts.hostname ? ['unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', opts.hostname, ...argv] : argv;
    const proc = spawnEngine(`gantry ${command}`, wrapped[0]!, wrapped.slice(1), {
      logFile, env: { ...process.env, ...opts.env },
    });
    await waitUntil(`gantry ${command} admin`, async () => {
      const res = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
      return opts.waitHealthy === false || res.ok;
    }, { proc, timeoutMs: 30_000 });
    return proc;
  };
  const g: GantryProcess = {
    proc: await launch(),
    adminUrl,
    dir,
    logs() {
      const out: Array<Record<string, unknown>> = [];
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { /* partial line */ }
      }
      return out;
    },
    async restart() { g.proc = await launch(); },
    async kill() { await g.proc.kill(); },
    async stop() { await g.proc.stop(); removeDir(dir); },
    tail: (n) => g.proc.tail(n),
  };
  return g;
}
