// What the gateway's tests share: Consul registration and KV writes over its
// HTTP API, `gantry gateway` as a child process, busybox httpd containers as
// upstreams, small in-test upstreams where a test must see what arrived
// (headers, copies, WebSocket frames), and a load generator.
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import { freePort, sleep, waitUntil } from '../../test/harness/process.ts';
import { runContainer } from '../../test/harness/engines/docker.ts';

export async function consulCall(addr: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${addr}${path}`, {
    method, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`consul ${method} ${path}: ${res.status} ${await res.text()}`);
  const text = await res.text();
  return text ? JSON.parse(text) as unknown : undefined;
}

export interface Registration {
  id: string;
  name: string;
  address: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  /** a TTL check (passing at once): the test flips it with setCheck */
  ttl?: boolean;
}

export async function register(addr: string, r: Registration): Promise<void> {
  await consulCall(addr, 'PUT', '/v1/agent/service/register', {
    ID: r.id, Name: r.name, Address: r.address, Port: r.port, Tags: r.tags ?? [], Meta: r.meta ?? {},
    ...(r.ttl ? { Check: { CheckID: `check-${r.id}`, TTL: '10m', Status: 'passing' } } : {}),
  });
}

export const deregister = (addr: string, id: string): Promise<unknown> => consulCall(addr, 'PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`);
export const setCheck = (addr: string, id: string, status: 'pass' | 'warn' | 'fail'): Promise<unknown> => consulCall(addr, 'PUT', `/v1/agent/check/${status}/check-${encodeURIComponent(id)}`);
export const kvPut = (addr: string, key: string, value: string): Promise<unknown> => consulCall(addr, 'PUT', `/v1/kv/${key}`, value);

export interface Gw extends GantryProcess {
  port: number;
  url: string;
  routes(): Promise<{ version: number; routes: Array<{ host: string; path: string; targets: Array<{ service: string; instances: Array<{ id: string }>; policy: unknown }> }> }>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  health(): Promise<Record<string, unknown>>;
}

/** `gantry gateway` against this Consul, on a free loopback port; ready once its first table is in */
export async function startGateway(consulAddr: string, extra: string[] = []): Promise<Gw> {
  const port = await freePort();
  const g = await startGantry('gateway', [
    '--consul-addr', consulAddr, '--listen', `127.0.0.1:${port}`, '--consul-min-spacing', '10ms',
    '--connect-timeout', '500ms', '--log-level', 'debug', ...extra,
  ]);
  const gw: Gw = Object.assign(g, {
    port,
    url: `http://127.0.0.1:${port}`,
    async routes() { return (await (await fetch(`${g.adminUrl}/routes`)).json()) as Awaited<ReturnType<Gw['routes']>>; },
    async metric(name: string, labels: Record<string, string> = {}) {
      const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
    async health() { return (await (await fetch(`${g.adminUrl}/healthz`)).json()) as Record<string, unknown>; },
  });
  return gw;
}

/** waits until /routes shows `service` with exactly these instance ids on the route host+path */
export async function waitInstances(gw: Gw, host: string, path: string, service: string, ids: string[], timeoutMs = 20_000): Promise<void> {
  const want = [...ids].sort().join(',');
  let last = '';
  await waitUntil(`route ${host}${path} → ${service} [${want}]`, async () => {
    const t = await gw.routes();
    const r = t.routes.find((x) => x.host === host && x.path === path);
    const target = r?.targets.find((x) => x.service === service);
    last = target ? target.instances.map((i) => i.id).sort().join(',') : '(none)';
    return last === want;
  }, { timeoutMs, intervalMs: 50 }).catch((err: unknown) => { throw new Error(`${(err as Error).message}; last seen [${last}]`); });
}

export async function waitPolicy(gw: Gw, host: string, path: string, service: string, has: (policy: Record<string, unknown> | null) => boolean, timeoutMs = 20_000): Promise<void> {
  await waitUntil(`policy of ${service} on ${host}${path}`, async () => {
    const t = await gw.routes();
    const target = t.routes.find((x) => x.host === host && x.path === path)?.targets.find((x) => x.service === service);
    return target !== undefined && has(target.policy as Record<string, unknown> | null);
  }, { timeoutMs, intervalMs: 50 });
}

export interface Reply { status: number; body: string; headers: http.IncomingHttpHeaders }

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** closes the pooled client connections (call in test.after.always, or the worker cannot exit) */
export function closeClients(): void { agent.destroy(); }

export function request(url: string, o: { host?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({
      host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: o.method ?? 'GET', agent,
      headers: { ...(o.host ? { host: o.host } : {}), ...o.headers }, timeout: o.timeoutMs ?? 20_000,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

export interface LoadResult { total: number; byStatus: Map<number, number>; byBody: Map<string, number>; errors: string[] }

/** `count` requests (or until `until` resolves), `concurrency` at a time */
export async function load(url: string, o: { host?: string; count?: number; until?: Promise<unknown>; concurrency: number; method?: string; headers?: Record<string, string> }): Promise<LoadResult> {
  const r: LoadResult = { total: 0, byStatus: new Map(), byBody: new Map(), errors: [] };
  let stop = false;
  void o.until?.then(() => { stop = true; });
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (!stop && (o.count === undefined || issued < o.count)) {
      issued++;
      try {
        const res = await request(url, { host: o.host, method: o.method, headers: o.headers });
        r.byStatus.set(res.status, (r.byStatus.get(res.status) ?? 0) + 1);
        const b = res.body.trim();
        r.byBody.set(b, (r.byBody.get(b) ?? 0) + 1);
        if (res.status !== 200) r.errors.push(`${res.status} ${b.slice(0, 200)}`);
      } catch (err) {
        r.errors.push(`client: ${(err as Error).message}`);
      }
      r.total++;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return r;
}

/** a busybox httpd container answering `body` at / (and at /<dir>/ for each dir) */
export async function busybox(docker: Docker, runId: string, name: string, body: string, dirs: string[] = []): Promise<{ container: Docker.Container; ip: string }> {
  const mk = dirs.map((d) => `mkdir -p /www/${d} && echo ${body} > /www/${d}/index.html && `).join('');
  const container = await runContainer(docker, {
    runId, name: `${runId}-${name}`,
    cmd: ['sh', '-c', `mkdir -p /www && echo ${body} > /www/index.html && ${mk}exec httpd -f -p 80 -h /www`],
  });
  const info = await container.inspect();
  const ip = Object.values(info.NetworkSettings.Networks).map((n) => n.IPAddress).find(Boolean) ?? '';
  if (!ip) throw new Error(`container ${name}: no IP address`);
  await waitUntil(`busybox ${name} httpd`, async () => (await fetch(`http://${ip}/`, { signal: AbortSignal.timeout(1000) })).ok, { timeoutMs: 20_000 });
  return { container, ip };
}

export interface TestUpstream {
  port: number;
  count: number;
  /** requests received, newest last */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; bodyBytes: number }>;
  close(): Promise<void>;
}

/** an in-test upstream that answers `name` (or what handler says) and records what arrived */
export async function testUpstream(name: string, handler?: (req: http.IncomingMessage, res: http.ServerResponse, up: TestUpstream) => void): Promise<TestUpstream> {
  const up: TestUpstream = { port: 0, count: 0, seen: [], close: async () => undefined };
  const server = http.createServer((req, res) => {
    up.count++;
    let bytes = 0;
    req.on('data', (c: Buffer) => { bytes += c.length; });
    req.on('end', () => {
      up.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes: bytes });
      if (up.seen.length > 5000) up.seen.shift();
    });
    if (handler) return handler(req, res, up);
    req.on('end', () => res.end(name));
  });
  // WebSocket echo (RFC 6455): handshake, then every client frame is unmasked and sent back
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Upstream: ${name}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        if (buf.length < 2) return;
        const op = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        const masked = (buf[1]! & 0x80) !== 0;
        if (buf.length < off + (masked ? 4 : 0) + len) return;
        const mask = masked ? buf.subarray(off, off + 4) : undefined;
        off += masked ? 4 : 0;
        const payload = Buffer.from(buf.subarray(off, off + len));
        if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
        buf = buf.subarray(off + len);
        if (op === 8) { socket.end(Buffer.from([0x88, 0])); return; }
        const head = payload.length < 126 ? Buffer.from([0x80 | op, payload.length]) : Buffer.from([0x80 | op, 126, payload.length >> 8, payload.length & 0xff]);
        socket.write(Buffer.concat([head, payload]));
      }
    });
    socket.on('error', () => socket.destroy());
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  up.port = (server.address() as AddressInfo).port;
  up.close = () => new Promise<void>((r) => {
    for (const s of upgraded) s.destroy(); // upgraded sockets are no longer the server's to close
    server.closeAllConnections();
    server.close(() => r());
  });
  return up;
}

export async function waitCount(what: string, fn: () => number | Promise<number>, atLeast: number, timeoutMs = 20_000): Promise<number> {
  let last = 0;
  await waitUntil(what, async () => { last = await fn(); return last >= atLeast; }, { timeoutMs, intervalMs: 50 })
    .catch((err: unknown) => { throw new Error(`${(err as Error).message}; last ${last}, wanted ≥ ${atLeast}`); });
  return last;
}

export { sleep };
