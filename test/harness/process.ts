// Starts an engine as a child process in its own process group, with its output
// kept in a log file, and makes sure nothing outlives the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export interface ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** true once the process has exited (for any reason) */
  exited(): boolean;
  /** resolves with the exit code/signal once the process has exited */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM the group, then SIGKILL after graceMs */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL the whole group at once */
  kill(): Promise<void>;
  /** the last lines of the log */
  tail(lines?: number): string;
}

const live = new Set<ManagedProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = (): void => {
    for (const p of live) {
      try { process.kill(-p.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  };
  process.on('exit', killAll);
  // a program with its own signal handling (scripts/up.ts) stops its engines itself
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    if (process.listenerCount(sig) === 0) process.once(sig, () => { killAll(); process.exit(130); });
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `gantry-${prefix}-`));
}

export function removeDir(dir: string): void {
  // a process still stopping may write one last file (a log line, a state file's temp) while the
  // tree is removed: ENOTEMPTY, retried (Node backs off 100, 200, … ms)
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
}

export function spawnEngine(name: string, cmd: string, args: string[], opts: SpawnOptions): ManagedProcess {
  hookExit();
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  log.write(`# ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true, // own process group, so stop() reaches grandchildren (haproxy workers, java)
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  // the output's last 256 KB also kept in memory: a test's teardown removes its temp dir (and the
  // log in it) before ava's afterEach hooks print a failed test's engine tails
  // (chunks kept as they come, the oldest dropped: no copy on the hot path of a busy log)
  const recent: Buffer[] = [];
  let recentBytes = 0;
  const keep = (d: Buffer): void => {
    recent.push(d);
    recentBytes += d.length;
    while (recentBytes - recent[0]!.length >= 256 * 1024) recentBytes -= recent.shift()!.length;
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let done = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      // what it wrote just before exiting may still be in the pipes, and piped into the log after
      // this event: read the pipes to their end (not for ever: a grandchild may hold them), then
      // the exit line, whose write completes after every write queued before it; only then is it
      // `exited()`, so a caller that reads the log finds the reason there
      const ended = (s: NodeJS.ReadableStream | null): Promise<void> | undefined =>
        s && !(s as { readableEnded?: boolean }).readableEnded ? new Promise((r) => { s.once('end', () => r()); s.once('close', () => r()); }) : undefined;
      const drained = Promise.all([ended(child.stdout), ended(child.stderr)]);
      void Promise.race([drained, new Promise((r) => setTimeout(r, 500).unref())]).then(() => {
        log.write(`# exited code=${code} signal=${signal}\n`, () => {
          done = true;
          live.delete(proc);
          resolve({ code, signal });
        });
      });
    });
    child.once('error', (err) => {
      done = true;
      live.delete(proc);
      log.write(`# spawn error: ${err.message}\n`);
      resolve({ code: -1, signal: null });
    });
  });
  if (child.pid === undefined) {
    throw new Error(`${name}: could not spawn ${cmd} (is it installed? run 'make deps')`);
  }
  const pid = child.pid;
  const signalGroup = (sig: NodeJS.Signals): void => {
    try { process.kill(-pid, sig); } catch { /* gone */ }
  };
  const proc: ManagedProcess = {
    name,
    logFile: opts.logFile,
    child,
    pid,
    exit,
    exited: () => done,
    async stop(graceMs = 5000) {
      if (done) { signalGroup('SIGKILL'); return; }
      signalGroup('SIGTERM');
      const t = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      await exit;
      clearTimeout(t);
      signalGroup('SIGKILL'); // stragglers in the group
    },
    async kill() {
      signalGroup('SIGKILL');
      await exit;
    },
    tail(lines = 40) {
      if (existsSync(opts.logFile)) return tailFile(opts.logFile, lines);
      return `(log ${opts.logFile} removed; its last lines kept in memory)\n${Buffer.concat(recent).toString('utf8').split('\n').slice(-lines - 1).join('\n')}`;
    },
  };
  live.add(proc);
  return proc;
}

export function tailFile(file: string, lines = 40): string {
  if (!existsSync(file)) return `(no log at ${file})`;
  const all = readFileSync(file, 'utf8').split('\n');
  return all.slice(-lines - 1).join('\n');
}

/** A free TCP port on 127.0.0.1 (the kernel picks it; it is released before use). */
/**
 * Ports this process has handed out: never handed out twice. A port is free only when asked, and
 * some engines bind theirs late: a ZooKeeper server binds its quorum port only once elected
 * leader, so a Consul agent started after the ensemble in the same test was once given that very
 * port, and the ensemble lost its quorum for good (the elected server could never bind).
 */
const handedOut = new Set<number>();

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, host, () => {
        const addr = srv.address();
        srv.close(() => {
          if (addr && typeof addr === 'object') resolve(addr.port);
          else reject(new Error('no port'));
        });
      });
    });
    if (!handedOut.has(port) || attempt >= 100) {
      handedOut.add(port);
      return port;
    }
  }
}

export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort(host));
  return [...out];
}

/**
 * A port on 127.0.0.1 that refuses connections for the whole run: privileged, so no engine the
 * harness starts (each on a port the kernel picks, 32768 and up) can take it, and not on fetch's
 * list of blocked ports. A port from freePort() is free only when asked: a parallel test's engine
 * took one once, and a test expecting ECONNREFUSED got "socket hang up".
 */
export const REFUSED_PORT = 1023;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `probe` until it resolves truthy. Fails with the engine's log tail when
 * the process exits first or the deadline passes.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; proc?: ManagedProcess } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastErr: unknown;
  for (;;) {
    if (opts.proc?.exited()) {
      throw new Error(`${what}: ${opts.proc.name} exited before it was ready; log ${opts.proc.logFile}:\n${opts.proc.tail()}`);
    }
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? ` (last error: ${lastErr.message})` : '';
      const log = opts.proc ? `; log ${opts.proc.logFile}:\n${opts.proc.tail()}` : '';
      throw new Error(`${what}: not ready after ${opts.timeoutMs ?? 30_000} ms${why}${log}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** Resolves when a TCP connect to host:port succeeds. */
export function tcpReady(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => { s.destroy(); resolve(false); });
  });
}

/** An engine that can be killed and started again on the same ports and dir. */
export interface RestartableEngine {
  proc: ManagedProcess;
  /** SIGKILL, as a crash would */
  kill(): Promise<void>;
  /** start again on the same ports */
  restart(): Promise<void>;
  /** stop and remove its dir */
  stop(): Promise<void>;
  tail(lines?: number): string;
}

/** Starts an engine with `launch` and wraps it with kill/restart/stop/tail. */
export async function restartable(dir: string, launch: () => Promise<ManagedProcess>): Promise<RestartableEngine> {
  const engine: RestartableEngine = {
    proc: await launch(),
    async kill() { await engine.proc.kill(); },
    async restart() { engine.proc = await launch(); },
    async stop() { await engine.proc.stop(); removeDir(dir); },
    tail: (n) => engine.proc.tail(n),
  };
  return engine;
}

/**
 * Free ports are picked, released, then bound by the engine; when another
 * process takes one in between ("address already in use"), start again with
 * new ports (up to 3 tries).
 */
export async function retryPortClash<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= 3 || !/address already in use|Address in use|bind/i.test(String(err))) throw err;
    }
  }
}
