// The request pipeline: refuse hostile requests, look the route up in the live
// table, apply the route's policy (rate limit, subset choice, mirror), hand the
// request to the data path (proxy/) and decide what a failed attempt means
// (another instance within the retry budget, ejection, 502/503/504).
import type http from 'node:http';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { escapeLogField, type Logger } from '@gantry/core';
import type { Route, RouteTable, Target, Upstream } from './routes/table.ts';
import { hostileReason, parserReason } from './proxy/hostile.ts';
import { fastUpstreamHead, upstreamRequestHeaders } from './proxy/headers.ts';
import { forward, type ForwardResult, type ForwardTimeouts, type Failure } from './proxy/forward.ts';
import { exchange } from './proxy/fast/exchange.ts';
import type { FastClient } from './proxy/fast/connection.ts';
import type { RequestHead } from './proxy/fast/head.ts';
import { forwardUpgrade } from './proxy/upgrade.ts';
import { replyError, replyOnSocket, replyRaw } from './proxy/reply.ts';
import type { Pools } from './proxy/pools.ts';
import { chooseSet, pickInstance, type InstanceSet } from './policy/select.ts';
import type { OutlierDetector } from './policy/outlier.ts';
import { retriable, type RetryBudget } from './policy/retry.ts';
import type { Mirror } from './policy/mirror.ts';
import type { RateLimiter } from './policy/ratelimit/limiter.ts';
import { rateLimitHeaders } from './policy/ratelimit/window.ts';
import type { GatewayMetrics } from './admin/metrics.ts';

export interface GatewayOptions {
  pools: Pools;
  outliers: OutlierDetector;
  budget: RetryBudget;
  mirror: Mirror;
  limiter: RateLimiter;
  metrics: GatewayMetrics;
  log: Logger;
  /** undefined: no access log */
  accessLog: Logger | undefined;
  timeouts: ForwardTimeouts;
  /** attempts a request may take (1 + retries) */
  maxAttempts: number;
  /** the scheme clients reach us with (X-Forwarded-Proto) */
  proto: 'http' | 'https';
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const STATUS_CLASS = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

function hostOf(header: string): string {
  let h = header;
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1).toLowerCase();
  const colon = h.lastIndexOf(':');
  if (colon !== -1) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

function pickTarget(route: Route, random: number): Target | undefined {
  const { targets, cum } = route;
  if (targets.length === 1) return targets[0];
  let i = 0;
  while (i < cum.length - 1 && random >= cum[i]!) i++;
  if (targets[i]!.instances.length) return targets[i];
  return targets.find((t) => t.instances.length > 0) ?? targets[i];
}

function upstreamPath(url: string, path: string, strip: string | undefined): string {
  if (strip === undefined || !path.startsWith(strip)) return url;
  const rest = url.slice(strip.length);
  return rest === '' || rest[0] === '?' ? `/${rest}` : rest[0] === '/' ? rest : `/${rest}`;
}

export class Gateway {
  private table: RouteTable | undefined;
  /** client sockets of upgraded connections: the HTTP server no longer tracks them */
  private readonly upgraded = new Set<Duplex>();
  private readonly metricChildren = new Map<string, { latency: ReturnType<GatewayMetrics['latency']['labels']>; codes: Array<ReturnType<GatewayMetrics['requests']['labels']> | undefined> }>();

  private readonly o: GatewayOptions;
  constructor(o: GatewayOptions) { this.o = o; }

  /** the new table serves every request that starts from now on */
  swap(table: RouteTable): void {
    this.table = table;
    const drained = this.o.pools.retain((k) => table.hasUpstream(k));
    if (drained) this.o.metrics.drainingPools.inc(drained);
    this.o.outliers.forget(table.removedUpstreams);
    this.o.metrics.routes.set(table.size);
    this.o.metrics.tableSwaps.inc();
    this.o.metrics.ejected.set(this.o.outliers.ejectedCount());
  }

  current(): RouteTable | undefined { return this.table; }

  /** ends upgraded connections (WebSockets) at shutdown */
  closeUpgraded(): void {
    for (const s of this.upgraded) s.destroy();
  }

  /** attaches the pipeline to an HTTP server */
  attach(server: http.Server): void {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => { void this.handle(req, res); });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { void this.handleUpgrade(req, socket, head); });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.clientError(err, socket));
  }

  private requestId(req: IncomingMessage): string {
    const given = req.headers['x-request-id'];
    return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  }

  private clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return; }
    const id = randomUUID();
    const reason = parserReason(err.code);
    const timeout = err.code === 'HPE_HEADERS_TIMEOUT';
    if (!timeout) this.o.metrics.hostile.inc();
    this.o.log.warn({ requestId: id, client: (socket as Socket).remoteAddress, reason, code: err.code }, timeout ? 'request head not received in time (408)' : 'hostile or malformed request refused (400)');
    replyOnSocket(socket, timeout ? 408 : 400, id, `bad request: ${reason}`);
  }

  /** a fast-path client did not send its request head in time: 408, as Node's server does */
  headTimeout(socket: Socket): void {
    const id = randomUUID();
    this.o.log.warn({ requestId: id, client: socket.remoteAddress, reason: 'headers not received in time', code: 'HPE_HEADERS_TIMEOUT' }, 'request head not received in time (408)');
    replyOnSocket(socket, 408, id, 'bad request: headers not received in time');
  }

  private observe(route: Route | undefined, status: number, startNs: bigint): number {
    const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
    const id = route?.id ?? 'none';
    let c = this.metricChildren.get(id);
    if (!c) {
      if (this.metricChildren.size > 10_000) this.metricChildren.clear();
      c = { latency: this.o.metrics.latency.labels(id), codes: [] };
      this.metricChildren.set(id, c);
    }
    const cls = Math.floor(status / 100);
    let counter = c.codes[cls];
    if (!counter) counter = c.codes[cls] = this.o.metrics.requests.labels(id, STATUS_CLASS[cls] ?? '0xx');
    counter.inc();
    c.latency.observe(seconds);
    return seconds;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startNs = process.hrtime.bigint();
    const id = this.requestId(req);
    const log = (route: Route | undefined, target: Target | undefined, u: Upstream | undefined, attempts: number, note?: string): void => {
      const seconds = this.observe(route, res.statusCode, startNs);
      this.o.accessLog?.info({
        requestId: id, client: req.socket.remoteAddress, method: escapeLogField(req.method ?? '', 16), host: escapeLogField(req.headers.host ?? '', 128),
        path: escapeLogField(req.url ?? '', 256), status: res.statusCode, ms: Math.round(seconds * 10_000) / 10,
        route: route?.id, service: target?.service, instance: u?.id, upstream: u?.key, attempts, ...(note ? { note } : {}),
      }, 'access');
    };
    const bad = hostileReason(req);
    if (bad) {
      this.o.metrics.hostile.inc();
      this.o.log.warn({ requestId: id, client: req.socket.remoteAddress, reason: bad }, 'hostile or malformed request refused (400)');
      replyError(res, 400, id, `bad request: ${bad}`, { connection: 'close' });
      log(undefined, undefined, undefined, 0, bad);
      return;
    }
    const table = this.table;
    const url = req.url!;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route = table?.lookup(hostOf(req.headers.host!), path);
    if (!route) {
      replyError(res, table ? 404 : 503, id, table ? 'no route for this host and path' : 'route table not loaded yet');
      log(undefined, undefined, undefined, 0);
      return;
    }
    const target = pickTarget(route, Math.random());
    if (!target || target.instances.length === 0) {
      replyError(res, 503, id, `no healthy instance of ${target?.service ?? 'this route'}`);
      log(route, target, undefined, 0);
      return;
    }
    const rule = target.policy?.rateLimit;
    if (rule) {
      const k = rule.key;
      const who = k.kind === 'ip' ? req.socket.remoteAddress ?? '' : k.kind === 'route' ? '' : String(req.headers[k.name] ?? '');
      const d = await this.o.limiter.decide(`${route.id}|${who}`, rule.limit, rule.windowMs);
      this.o.metrics.rateDecisions.inc({ backend: d.backend, result: d.allowed ? 'allowed' : 'limited' });
      const h = rateLimitHeaders(d, rule.windowMs);
      if (!d.allowed) {
        replyError(res, 429, id, 'rate limit exceeded', h);
        log(route, target, undefined, 0, `rate-limited (${d.backend})`);
        return;
      }
      for (const name in h) res.setHeader(name, h[name]!);
    }
    const set = chooseSet(target.selector, req.headers, Math.random());
    const upath = upstreamPath(url, path, target.strip);
    const headers = upstreamRequestHeaders(req.headers, { ip: req.socket.remoteAddress ?? '', proto: this.o.proto, host: req.headers.host!, requestId: id });
    const body = hasBody(req);
    const m = target.mirror;
    if (m && (m.percent >= 100 || Math.random() * 100 < m.percent)) {
      const mi = m.instances.length ? m.instances[(m.cursor = (m.cursor + 1) % m.instances.length)] : undefined;
      this.o.mirror.copy(m.service, req.method!, body ? req : undefined, mi, upath, headers);
    }
    const { u, attempts, note } = await this.tryInstances(set, target.service, req.method, body, id,
      (up) => forward(req, res, this.o.pools.get(up), upath, headers, body, id, this.o.timeouts),
      () => res.destroyed,
      (status, message) => replyError(res, status, id, message));
    log(route, target, u, attempts, note);
  }

  /**
   * Sends the request to an instance of `set` and, when that attempt fails, to
   * others within the attempt limit and the retry budget; failures count toward
   * ejection. `reply` answers the client when no attempt could.
   */
  private async tryInstances<R extends ForwardResult>(
    set: InstanceSet<Upstream>, service: string, method: string | undefined, body: boolean, id: string,
    send: (u: Upstream) => Promise<R>, gone: () => boolean, reply: (status: number, message: string) => void,
  ): Promise<{ u: Upstream | undefined; attempts: number; note: string | undefined; last: R | undefined }> {
    this.o.budget.request(Date.now());
    let tried: Set<Upstream> | undefined;
    let u: Upstream | undefined;
    let attempts = 0;
    let note: string | undefined;
    let lastFailure: Failure | undefined;
    let last: R | undefined;
    for (;;) {
      u = pickInstance(set, this.o.outliers, Date.now(), tried);
      if (!u) {
        if (lastFailure) this.replyFailure(reply, service, lastFailure);
        else reply(503, `no instance of ${service} could answer`);
        break;
      }
      attempts++;
      const r = last = await send(u);
      if (r.clientGone) {
        if (u.health.probing) u.health.probing = false; // no verdict on a half-open probe
        note = 'client closed the connection';
        break;
      }
      if (r.failure === undefined) {
        if (r.status >= 500) this.fail(u, Date.now());
        else this.o.outliers.success(u.health);
        break;
      }
      this.o.metrics.upstreamErrors.inc({ service, failure: r.failure });
      lastFailure = r.failure;
      if (r.failure === 'invalid') { // the request as it came, not the upstream: no ejection, no retry
        if (u.health.probing) u.health.probing = false;
        this.o.log.warn({ requestId: id, service, err: r.error }, 'request could not be forwarded as given (502)');
        this.replyFailure(reply, service, r.failure);
        break;
      }
      this.fail(u, Date.now());
      this.o.log.debug({ requestId: id, service, instance: u.id, upstream: u.key, failure: r.failure, err: r.error }, 'upstream attempt failed');
      if (r.responded) break;
      if (attempts < this.o.maxAttempts && retriable(method, r.failure, body, r.responded) && !gone()) {
        (tried ??= new Set()).add(u);
        if (tried.size < set.instances.length || r.failure === 'connect') {
          if (this.o.budget.tryRetry(Date.now())) { this.o.metrics.retries.inc({ service }); continue; }
          this.o.metrics.retryBudgetExhausted.inc();
        }
      }
      this.replyFailure(reply, service, r.failure);
      break;
    }
    return { u, attempts, note, last };
  }

  /**
   * The fast path (proxy/fast/): a request whose head it parsed (no body).
   * Resolves true when the client's connection must close after this answer.
   */
  async serveFast(client: FastClient, head: RequestHead): Promise<boolean> {
    const startNs = process.hrtime.bigint();
    const table = this.table;
    const loaded = table !== undefined;
    const url = head.target;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route = table?.lookup(hostOf(head.host), path);
    const target = route && pickTarget(route, Math.random());
    const given = head.byKey['x-request-id'];
    const id = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    let status = 0;
    const write = (t: string): void => { client.write(t); };
    let extra = ''; // rate-limit headers of an allowed request
    const reply = (code: number, message: string, more = extra): void => { status = code; replyRaw(write, code, id, message, head.close, more); };
    const access = (u: Upstream | undefined, attempts: number, note?: string): void => {
      const seconds = this.observe(route, status, startNs);
      this.o.accessLog?.info({
        requestId: id, client: client.remoteAddress, method: head.method, host: escapeLogField(head.host, 128),
        path: escapeLogField(url, 256), status, ms: Math.round(seconds * 10_000) / 10,
        route: route?.id, service: target?.service, instance: u?.id, upstream: u?.key, attempts, ...(note ? { note } : {}),
      }, 'access');
    };
    if (!route) {
      reply(loaded ? 404 : 503, loaded ? 'no route for this host and path' : 'route table not loaded yet');
      access(undefined, 0);
      return head.close;
    }
    if (!target || target.instances.length === 0) {
      reply(503, `no healthy instance of ${target?.service ?? 'this route'}`);
      access(undefined, 0);
      return head.close;
    }
    const rule = target.policy?.rateLimit;
    if (rule) {
      const k = rule.key;
      const who = k.kind === 'ip' ? client.remoteAddress : k.kind === 'route' ? '' : head.byKey[k.name] ?? '';
      const d = await this.o.limiter.decide(`${route.id}|${who}`, rule.limit, rule.windowMs);
      this.o.metrics.rateDecisions.inc({ backend: d.backend, result: d.allowed ? 'allowed' : 'limited' });
      const h = rateLimitHeaders(d, rule.windowMs);
      for (const name in h) extra += `${name}: ${h[name]!}\r\n`;
      if (!d.allowed) {
        reply(429, 'rate limit exceeded');
        access(undefined, 0, `rate-limited (${d.backend})`);
        return head.close;
      }
    }
    const headers = head.byKey as IncomingHttpHeaders;
    const set = chooseSet(target.selector, headers, Math.random());
    const upath = upstreamPath(url, path, target.strip);
    const info = { ip: client.remoteAddress, proto: this.o.proto, host: head.host, requestId: id };
    const m = target.mirror;
    if (m && (m.percent >= 100 || Math.random() * 100 < m.percent)) {
      const mi = m.instances.length ? m.instances[(m.cursor = (m.cursor + 1) % m.instances.length)] : undefined;
      this.o.mirror.copy(m.service, head.method, undefined, mi, upath, upstreamRequestHeaders(headers, info));
    }
    const request = fastUpstreamHead(head, upath, info);
    const { u, attempts, note, last } = await this.tryInstances(set, target.service, head.method, false, id,
      (up) => exchange(client, this.o.pools.get(up), request, head.method, id, head.close, this.o.timeouts, extra),
      () => client.socket.destroyed,
      (code, message) => reply(code, message, ''));
    const gone = last?.clientGone === true || client.socket.destroyed;
    if (last && last.failure === undefined && !last.clientGone) status = last.status;
    else if (last?.responded) status = last.status;
    access(u, attempts, note);
    return head.close || (last?.closeClient ?? false) || gone;
  }

  private fail(u: Upstream, now: number): void {
    if (this.o.outliers.failure(u.health, now)) {
      this.o.metrics.ejections.inc();
      this.o.metrics.ejected.set(this.o.outliers.ejectedCount());
      this.o.log.warn({ service: u.service, instance: u.id, upstream: u.key, ejections: u.health.ejections, until: new Date(u.health.ejectedUntil).toISOString() }, 'upstream ejected after consecutive failures');
    }
  }

  private replyFailure(reply: (status: number, message: string) => void, service: string, failure: Failure): void {
    if (failure === 'header-timeout' || failure === 'idle-timeout') reply(504, `${service} did not answer in time`);
    else reply(502, `${service} could not be reached (${failure})`);
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const id = this.requestId(req);
    socket.on('error', () => socket.destroy());
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    const bad = hostileReason(req);
    if (bad) {
      this.o.metrics.hostile.inc();
      this.o.log.warn({ requestId: id, client: req.socket.remoteAddress, reason: bad }, 'hostile or malformed upgrade refused (400)');
      replyOnSocket(socket, 400, id, `bad request: ${bad}`);
      return;
    }
    const url = req.url!;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route = this.table?.lookup(hostOf(req.headers.host!), path);
    const target = route && pickTarget(route, Math.random());
    if (!route || !target || !target.instances.length) {
      replyOnSocket(socket, route ? 503 : 404, id, route ? 'no healthy instance' : 'no route for this host and path');
      return;
    }
    const set = chooseSet(target.selector, req.headers, Math.random());
    const headers = upstreamRequestHeaders(req.headers, { ip: req.socket.remoteAddress ?? '', proto: this.o.proto, host: req.headers.host!, requestId: id }, true);
    const tried = new Set<Upstream>();
    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      const u = pickInstance(set, this.o.outliers, Date.now(), tried);
      if (!u) break;
      tried.add(u);
      const r = await forwardUpgrade(req, socket, head, u, upstreamPath(url, path, target.strip), headers, id, this.o.timeouts.connectMs);
      this.o.accessLog?.info({ requestId: id, client: req.socket.remoteAddress, method: req.method, host: escapeLogField(req.headers.host ?? '', 128), path: escapeLogField(url, 256), status: r.status, route: route.id, service: target.service, instance: u.id, upgrade: escapeLogField(String(req.headers.upgrade ?? ''), 32), attempts: attempt }, 'access');
      if (!r.failure) { this.o.outliers.success(u.health); return; }
      this.o.metrics.upstreamErrors.inc({ service: target.service, failure: r.failure });
      this.fail(u, Date.now());
      if (r.failure !== 'connect') break;
    }
    replyOnSocket(socket, 502, id, `${target.service} could not be reached`);
  }
}
