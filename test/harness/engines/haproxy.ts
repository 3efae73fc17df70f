// A real HAProxy in master-worker mode: master CLI socket, admin socket with
// `expose-fd listeners` (seamless reloads), a frontend and a stats page.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { checkEnv } from '@gantry/templater';
import { spawnEngine, tempDir, freePorts, waitUntil, removeDir, sleep, retryPortClash, type ManagedProcess } from '../process.ts';

export interface HAProxyEngine {
  readonly dir: string;
  readonly cfgFile: string;
  readonly masterSocket: string;
  readonly adminSocket: string;
  /** the master's pid file (-p) */
  readonly pidFile: string;
  /** the frontend of the default config (answers 200 "ok") */
  readonly httpPort: number;
  readonly statsPort: number;
  proc: ManagedProcess;
  /** one command on the admin (Runtime API) socket */
  runtime(cmd: string): Promise<string>;
  /**
   * one command on the master CLI socket; a refused connection is tried again (the master
   * re-executes itself after a reload, and in wait mode right after its first worker starts)
   */
  master(cmd: string): Promise<string>;
  /** current worker pids and the master's reload count (`show proc`) */
  processes(): Promise<{ reloads: number; workers: number[]; oldWorkers: number[] }>;
  /** `reload` on the master CLI, confirmed by `show proc`: true when a new worker generation runs */
  reload(): Promise<boolean>;
  kill(): Promise<void>;
  /** start again from the config file on disk, same sockets and ports (after kill) */
  restart(): Promise<void>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

export function globalSection(dir: string): string {
  return [
    'global',
    '    maxconn 2000',
    `    stats socket ${join(dir, 'admin.sock')} mode 600 level admin expose-fd listeners`,
    `    pidfile ${join(dir, 'haproxy.pid')}`,
    '    hard-stop-after 10s',
    '    mworker-max-reloads 50',
  ].join('\n');
}

/** The global section, defaults, and a frontend answering every request itself. */
export function answeringConfig(dir: string, httpPort: number, answer: { status: number; body: string } = { status: 200, body: 'ok' }): string {
  return `${globalSection(dir)}

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend web
    bind 127.0.0.1:${httpPort}
    http-request return status ${answer.status} content-type text/plain string ${answer.body}
`;
}

export function defaultConfig(dir: string, httpPort: number, statsPort: number): string {
  return `${answeringConfig(dir, httpPort)}
frontend stats
    bind 127.0.0.1:${statsPort}
    stats enable
    stats uri /
`;
}

export type ConfigParams = { dir: string; httpPort: number; statsPort: number };

export interface HAProxyOptions {
  /**
   * A whole config: a function of the engine's dir and free ports, or a string in
   * which {{dir}}, {{httpPort}} and {{statsPort}} are replaced. Default: defaultConfig.
   * It should keep globalSection (admin socket, maxconn ≤ 4000 for this FD limit).
   */
  config?: string | ((p: ConfigParams) => string);
}

function renderConfig(config: HAProxyOptions['config'], p: ConfigParams): string {
  if (config === undefined) return defaultConfig(p.dir, p.httpPort, p.statsPort);
  if (typeof config === 'function') return config(p);
  return config.replace(/\{\{(dir|httpPort|statsPort)\}\}/g, (_, k: keyof ConfigParams) => String(p[k]));
}

/** Starts HAProxy; when a free port is taken before it binds, again with new ports. */
export function startHAProxy(opts: HAProxyOptions = {}): Promise<HAProxyEngine> {
  return retryPortClash(() => startHAProxyOnce(opts));
}

async function startHAProxyOnce(opts: HAProxyOptions): Promise<HAProxyEngine> {
  const bin = systemBin('haproxy');
  const dir = tempDir('haproxy');
  const [httpPort, statsPort] = await freePorts(2);
  const cfgFile = join(dir, 'haproxy.cfg');
  const masterSocket = join(dir, 'master.sock');
  const adminSocket = join(dir, 'admin.sock');
  const pidFile = join(dir, 'haproxy.pid');
  writeFileSync(cfgFile, renderConfig(opts.config, { dir, httpPort: httpPort!, statsPort: statsPort! }));
  const launch = async (): Promise<ManagedProcess> => {
    // started as the templater's README says: glibc's malloc on transparent huge pages, so the
    // master's parse at a reload is not mostly page faults (the templater's check runs the same way)
    const p = spawnEngine('haproxy', bin, ['-W', '-S', `${masterSocket},level,admin`, '-f', cfgFile, '-p', pidFile], { logFile: join(dir, 'haproxy.log'), cwd: dir, env: checkEnv(process.env) });
    await waitUntil('haproxy', async () => (await socketCommand(adminSocket, 'show info', 1000)).includes('Pid:'), { proc: p, timeoutMs: 15_000 })
      .catch(async (err: unknown) => { await p.kill(); throw err; }); // nothing left running when it fails
    return p;
  };
  const proc = await launch();

  // the master CLI is gone while the master re-executes itself (a reload: seconds with 20,000
  // backends; and once into wait mode right after it started its first worker)
  const masterCommand = async (cmd: string): Promise<string> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await socketCommand(masterSocket, cmd);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (Date.now() > deadline || (code !== 'ECONNREFUSED' && code !== 'ENOENT')) throw err;
        await sleep(100);
      }
    }
  };

  const processes = async (): Promise<{ reloads: number; workers: number[]; oldWorkers: number[] }> => {
    const text = await masterCommand('show proc');
    let section = 'master';
    let reloads = -1;
    const workers: number[] = [];
    const oldWorkers: number[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith('# workers')) { section = 'workers'; continue; }
      if (line.startsWith('# old workers')) { section = 'old'; continue; }
      if (line.startsWith('#')) { section = line.includes('programs') ? 'programs' : section; continue; }
      const cols = line.trim().split(/\s+/);
      if (cols.length < 3) continue;
      const pid = Number(cols[0]);
      if (cols[1] === 'master') reloads = Number(cols[2]);
      else if (section === 'workers') workers.push(pid);
      else if (section === 'old') oldWorkers.push(pid);
    }
    return { reloads, workers, oldWorkers };
  };

  const engine: HAProxyEngine = {
    dir, cfgFile, masterSocket, adminSocket, pidFile, httpPort: httpPort!, statsPort: statsPort!, proc,
    runtime: (cmd) => socketCommand(adminSocket, cmd),
    master: masterCommand,
    processes,
    async reload() {
      const before = await processes();
      await masterCommand('reload');
      for (let i = 0; i < 600; i++) {
        await sleep(100);
        const after = await processes().catch(() => undefined);
        if (after && after.reloads > before.reloads && after.workers.some((p) => !before.workers.includes(p))) return true;
      }
      return false;
    },
    async kill() { await engine.proc.kill(); },
    async restart() { engine.proc = await launch(); },
    async stop() { await engine.proc.stop(); removeDir(dir); },
    tail: (n) => engine.proc.tail(n),
  };
  return engine;
}
