// Prometheus metrics and the admin HTTP endpoint (/metrics, /healthz) every
// long-running part serves.
import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './logger.ts';

export { Counter, Gauge, Histogram, Summary, Registry } from 'prom-client';

export function createRegistry(component: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry, prefix: 'gantry_' });
  return registry;
}

export interface Health {
  ok: boolean;
  [detail: string]: unknown;
}

export interface AdminServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 picks one). GET /metrics, GET /healthz (200 or 503). */
export async function startAdminServer(opts: {
  addr: string;
  registry: Registry;
  health: () => Health | Promise<Health>;
  log?: Logger;
  /** more GET paths answered with JSON (e.g. the gateway's /routes) */
  json?: Readonly<Record<string, () => unknown>>;
}): Promise<AdminServer> {
  const { host, port } = splitHostPort(opts.addr);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET') return reply(405, 'text/plain', 'method not allowed\n');
    if (path === '/metrics') {
      opts.registry.metrics().then((text) => reply(200, opts.registry.contentType, text), (err: unknown) => reply(500, 'text/plain', `${String(err)}\n`));
      return;
    }
    if (path === '/healthz') {
      Promise.resolve(opts.health()).then(
        (h) => reply(h.ok ? 200 : 503, 'application/json', `${JSON.stringify(h)}\n`),
        (err: unknown) => reply(503, 'application/json', `${JSON.stringify({ ok: false, error: String(err) })}\n`),
      );
      return;
    }
    const extra = path !== undefined ? opts.json?.[path] : undefined;
    if (extra) {
      try {
        return reply(200, 'application/json', `${JSON.stringify(extra())}\n`);
      } catch (err) {
        return reply(500, 'text/plain', `${String(err)}\n`);
      }
    }
    reply(404, 'text/plain', `not found: try /metrics or /healthz${Object.keys(opts.json ?? {}).map((p) => ` or ${p}`).join('')}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = address && typeof address === 'object' ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  opts.log?.info({ url }, 'admin endpoint listening (/metrics, /healthz)');
  return {
    port: bound,
    url,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** "127.0.0.1:9100", ":9100", "[::1]:9100" → host and port. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`invalid address ${JSON.stringify(addr)}: expected host:port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
