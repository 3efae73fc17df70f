// `gantry audit serve`: the read-only registry page. Server-rendered HTML (paged
// table, drift, timeline, per-service history), /app.js for the live timeline
// over Server-Sent Events, JSON under /api/. Strict CSP, no inline script, no
// CDN. Bound to loopback by default; beyond it a bearer token or basic auth is
// required (checked on every request, compared in constant time).
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { timingSafeEqual, createHash } from 'node:crypto';
import { errorMessage, splitHostPort, type ConsulClient, type Logger } from '@gantry/core';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { readState, type RegistryState } from '../state.ts';
import { computeDrift, type DriftOptions, type DriftReport } from '../drift.ts';
import { followAudit } from '../reader.ts';
import type { AuditEntry } from '../entry.ts';
import { renderIndex, renderService, renderTable, type Filter } from './html.ts';

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

export interface PageServerOptions {
  addr: string;
  consul: ConsulClient;
  audit: { url: string; key: string; windowMs: number };
  drift: DriftOptions;
  refreshMs: number;
  token?: string | undefined;
  /** user:password */
  basicAuth?: string | undefined;
  log: Logger;
  registry: Registry;
}

export interface PageServer { url: string; port: number; close(): Promise<void> }

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);

const assets = new URL('../../assets/', import.meta.url);
const asset = (name: string): Buffer => readFileSync(new URL(name, assets));

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
const same = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b));

function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

export async function startPageServer(o: PageServerOptions): Promise<PageServer> {
  const { host, port } = splitHostPort(o.addr);
  if (!isLoopback(host) && !o.token && !o.basicAuth) {
    throw new Error(`refusing to serve the registry page on ${host} without --token or --basic-auth (only loopback may go unauthenticated)`);
  }
  const m = {
    requests: new Counter({ name: 'gantry_audit_page_requests_total', help: 'page requests by route and status', labelNames: ['route', 'status'], registers: [o.registry] }),
    reads: new Histogram({ name: 'gantry_audit_state_read_seconds', help: 'one read of Consul, heartbeats and the audit stream plus the drift computation', registers: [o.registry] }),
    instances: new Gauge({ name: 'gantry_audit_instances', help: 'instances in the registry at the last read', registers: [o.registry] }),
    sse: new Gauge({ name: 'gantry_audit_sse_clients', help: 'open timeline streams', registers: [o.registry] }),
  };

  const clients = new Set<http.ServerResponse>();
  // the registry as of the last read; read again every refreshMs and soon after an audit entry
  let state: RegistryState | undefined;
  let drift: DriftReport | undefined;
  let readError: string | null = null;
  let reading: Promise<void> | undefined;
  let again = false;
  let lastSig = '';
  const recent: Array<AuditEntry & { id: string }> = [];
  const read = (): Promise<void> => {
    if (reading) { again = true; return reading; }
    reading = (async () => {
      do {
        again = false;
        const t0 = performance.now();
        try {
          const s = await readState({ consul: o.consul, audit: { url: o.audit.url, key: o.audit.key, since: new Date(Date.now() - o.audit.windowMs) } });
          state = s;
          drift = computeDrift(s.records, s.owners, s.bad, s.entries, o.drift);
          // tell the pages when what they show changed (they fetch the table again)
          const sig = signature(s);
          if (sig !== lastSig) {
            lastSig = sig;
            for (const c of clients) c.write(`event: registry\ndata: ${s.records.length}\n\n`);
          }
          readError = s.auditError ? `audit stream: ${s.auditError}` : null;
          m.instances.set(s.records.length);
        } catch (err) {
          readError = errorMessage(err);
          o.log.warn({ err: readError }, 'registry read failed');
        }
        m.reads.observe((performance.now() - t0) / 1000);
      } while (again);
    })().finally(() => { reading = undefined; });
    return reading;
  };
  let soon: NodeJS.Timeout | undefined;
  const readSoon = (): void => { soon ??= setTimeout(() => { soon = undefined; void read(); }, 200); };
  const timer = setInterval(() => void read(), o.refreshMs);

  // the live timeline: one follower, every SSE client fed from it
  const stop = new AbortController();
  const follow = async (): Promise<void> => {
    while (!stop.signal.aborted) {
      await followAudit({ url: o.audit.url, key: o.audit.key }, (e) => {
        recent.push(e);
        if (recent.length > 200) recent.shift();
        const line = `id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`;
        for (const c of clients) c.write(line);
        readSoon();
      }, stop.signal).catch((err: unknown) => o.log.warn({ err: errorMessage(err) }, 'audit stream follow failed; retrying'));
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  void follow();

  const authorized = (req: http.IncomingMessage): boolean => {
    if (!o.token && !o.basicAuth) return true;
    const auth = req.headers.authorization ?? '';
    if (o.token) {
      if (auth.startsWith('Bearer ') && same(auth.slice(7), o.token)) return true;
      const c = cookie(req, 'gantry_audit_token');
      if (c !== undefined && same(c, o.token)) return true;
    }
    if (o.basicAuth && auth.startsWith('Basic ')) {
      if (same(Buffer.from(auth.slice(6), 'base64').toString('utf8'), o.basicAuth)) return true;
    }
    return false;
  };

  const filterOf = (u: URL): Filter => ({
    q: u.searchParams.get('q') ?? '', source: u.searchParams.get('source') ?? '', owner: u.searchParams.get('owner') ?? '',
    health: u.searchParams.get('health') ?? '', service: u.searchParams.get('service') ?? '',
    page: Math.max(1, Number.parseInt(u.searchParams.get('page') ?? '1', 10) || 1), pageSize: 100,
  });

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://page.invalid');
    const route = u.pathname.startsWith('/service/') ? '/service' : u.pathname;
    const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void => {
      m.requests.inc({ route: ['/', '/service', '/app.js', '/style.css', '/events', '/api/drift', '/api/instances', '/metrics', '/healthz'].includes(route) ? route : 'other', status: String(status) });
      res.writeHead(status, {
        'content-type': type, 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY', 'cache-control': 'no-store', ...extra,
      });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'read-only: GET only\n');
    // ?token= once in a browser → an HttpOnly cookie, and the token leaves the address bar
    const qtoken = u.searchParams.get('token');
    if (o.token && qtoken !== null && same(qtoken, o.token)) {
      u.searchParams.delete('token');
      return send(303, 'text/plain; charset=utf-8', 'see other\n', { location: `${u.pathname}${u.search}`, 'set-cookie': `gantry_audit_token=${encodeURIComponent(o.token)}; HttpOnly; SameSite=Strict; Path=/` });
    }
    if (!authorized(req)) {
      return send(401, 'text/plain; charset=utf-8', 'unauthorized: a bearer token or basic auth is required\n', o.basicAuth ? { 'www-authenticate': 'Basic realm="gantry audit", charset="UTF-8"' } : { 'www-authenticate': 'Bearer' });
    }
    if (u.pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
    if (u.pathname === '/app.js') return send(200, 'text/javascript; charset=utf-8', asset('app.js'));
    if (u.pathname === '/style.css') return send(200, 'text/css; charset=utf-8', asset('style.css'));
    if (u.pathname === '/healthz') return send(state ? 200 : 503, 'application/json', `${JSON.stringify({ ok: Boolean(state), readError })}\n`);
    if (u.pathname === '/metrics') {
      o.registry.metrics().then((t) => send(200, o.registry.contentType, t), (err: unknown) => send(500, 'text/plain', `${errorMessage(err)}\n`));
      return;
    }
    if (u.pathname === '/events') {
      m.requests.inc({ route: '/events', status: '200' });
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff' });
      res.write(': timeline\n\n');
      clients.add(res);
      m.sse.set(clients.size);
      req.on('close', () => { clients.delete(res); m.sse.set(clients.size); });
      return;
    }
    const ready = state ? Promise.resolve() : read();
    ready.then(() => {
      const now = Date.now();
      const s = state ?? { records: [], owners: new Map(), entries: [] as Array<AuditEntry & { id: string }> };
      const entries = mergeEntries(s.entries, recent);
      if (u.pathname === '/') {
        if (u.searchParams.get('partial') === 'table') return send(200, 'text/html; charset=utf-8', renderTable(s.records, s.owners, filterOf(u), now));
        return send(200, 'text/html; charset=utf-8', renderIndex({ records: s.records, owners: s.owners, drift, entries, filter: filterOf(u), now, readError }));
      }
      if (u.pathname.startsWith('/service/')) {
        const name = decodeURIComponent(u.pathname.slice('/service/'.length));
        return send(200, 'text/html; charset=utf-8', renderService({ name, records: s.records, owners: s.owners, entries, now }));
      }
      if (u.pathname === '/api/drift') return send(200, 'application/json', `${JSON.stringify(drift ?? null)}\n`);
      if (u.pathname === '/api/instances') return send(200, 'application/json', `${JSON.stringify(s.records)}\n`);
      return send(404, 'text/plain; charset=utf-8', 'not found\n');
    }).catch((err: unknown) => send(500, 'text/plain; charset=utf-8', `${errorMessage(err)}\n`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  void read();
  const a = server.address();
  const bound = a && typeof a === 'object' ? a.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  o.log.info({ url, auth: o.token ? 'token' : o.basicAuth ? 'basic' : 'none (loopback)' }, 'registry page listening');
  return {
    url,
    port: bound,
    close: async () => {
      clearInterval(timer);
      if (soon) clearTimeout(soon);
      stop.abort();
      for (const c of clients) c.end();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Changes when an instance, its health or an owner's liveness changes. */
function signature(s: RegistryState): string {
  let h = 0;
  for (const r of s.records) {
    h = (h * 31 + r.modifyIndex) | 0;
    h = (h * 31 + { passing: 1, warning: 2, critical: 3 }[r.health] + (r.checks.length << 3)) | 0;
  }
  const alive = [...s.owners.values()].map((w) => `${w.owner}:${w.alive}`).sort().join(',');
  return `${s.records.length}/${h}/${alive}`;
}

/** The read's entries plus those streamed since (by stream id, no duplicates). */
function mergeEntries(read: Array<AuditEntry & { id: string }>, recent: Array<AuditEntry & { id: string }>): Array<AuditEntry & { id: string }> {
  const last = read.length ? read[read.length - 1]!.id : '';
  const newer = recent.filter((e) => compareIds(e.id, last) > 0);
  return newer.length ? [...read, ...newer] : read;
}

function compareIds(a: string, b: string): number {
  if (!b) return 1;
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}
