// Test helpers for the templater's own tests: services written straight into a
// real Consul through its HTTP API, small HTTP servers that say who they are,
// and `gantry templater` run as a child process through the harness.
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../test/harness/bins.ts';
import { spawnEngine, waitUntil, type ManagedProcess } from '../../test/harness/process.ts';
import { answeringConfig } from '../../test/harness/engines/haproxy.ts';

export { register, setCheck, deregister, kvPut, type Registration } from '../../test/harness/consul-catalog.ts';

export interface NamedServer { name: string; address: string; port: number; hits: number; close(): Promise<void> }

/** an HTTP server answering 200 with its name (to see which instance served) */
export async function namedServer(name: string, address = '127.0.0.1'): Promise<NamedServer> {
  const srv = http.createServer((req, res) => {
    s.hits++;
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'keep-alive' });
    res.end(name);
  });
  srv.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => srv.listen(0, address, resolve));
  const port = (srv.address() as { port: number }).port;
  const s: NamedServer = {
    name, address, port, hits: 0,
    close: () => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }),
  };
  return s;
}

/** GET through HAProxy with a Host header; status and body, or the error */
export function get(port: number, host: string, path = '/', bindAddr = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return send(port, 'GET', host, { path, bindAddr });
}

/** any method through HAProxy with a Host header (a body for POST and the like); status and body, or the error */
export async function send(port: number, method: string, host: string, o: { path?: string; bindAddr?: string; body?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host, connection: 'close' };
    if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const req = http.request({ host: o.bindAddr ?? '127.0.0.1', port, path: o.path ?? '/', method, headers, agent: false, timeout: o.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

export interface TemplaterProcess {
  proc: ManagedProcess;
  /** parsed JSON log lines so far */
  logs(): Array<Record<string, unknown>>;
  waitForLog(what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  adminUrl(): Promise<string>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
  tail(n?: number): string;
}

export function gantryArgs(sub: string, args: string[]): string[] {
  return [join(repoRoot, 'cli', 'bin', 'gantry.js'), sub, ...args];
}

/** `gantry templater <args>` as a child process, its log in dir/templater.log */
export function startTemplater(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): TemplaterProcess {
  const logFile = join(dir, `templater-${Date.now()}.log`);
  const proc = spawnEngine('templater', process.execPath, gantryArgs('templater', ['--admin-addr', '127.0.0.1:0', ...args]), { logFile, env: { ...process.env, ...env } });
  const logs = (): Array<Record<string, unknown>> => {
    if (!existsSync(logFile)) return [];
    return readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => {
      try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; }
    });
  };
  const t: TemplaterProcess = {
    proc,
    logs,
    waitForLog: (what, pred, timeoutMs = 30_000) => waitUntil(what, async () => logs().find(pred), { timeoutMs, proc, intervalMs: 50 }),
    async adminUrl() {
      const l = await t.waitForLog('admin endpoint', (x) => typeof x.url === 'string' && String(x.msg).startsWith('admin endpoint'));
      return l.url as string;
    },
    async metric(name, labels = {}) {
      const text = await (await fetch(`${await t.adminUrl()}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.split(' ').pop());
      }
      return sum;
    },
    stop: () => proc.stop(),
    tail: (n) => proc.tail(n),
  };
  return t;
}

/** the templater's bootstrap HAProxy config for the harness engine: its sockets, nothing served yet */
export function bootstrapConfig(p: { dir: string; httpPort: number }): string {
  return answeringConfig(p.dir, p.httpPort, { status: 503, body: 'bootstrap' });
}
