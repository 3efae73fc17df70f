// `gantry gateway`: an L7 proxy routing by Host and path to the healthy
// instances the Consul catalog holds, with canary/blue-green/mirroring policy
// from Consul KV and rate limits shared through Redis.
import http from 'node:http';
import { hostname } from 'node:os';
import { pino } from 'pino';
import {
  UsageError, createConsul, createLogger, createRegistry, startAdminServer, consulFlags, commonFlags,
  consulConfigFromFlags, escapeDnsName, errorMessage, splitHostPort, CatalogWatcher, type Command, type FlagSpec,
} from '@gantry/core';

import { AuditWriter } from '@gantry/audit';
import { Gateway } from './gateway.ts';
import { RouteSource } from './routes/source.ts';
import { Pools } from './proxy/pools.ts';
import { FastFront } from './proxy/fast/connection.ts';
import { OutlierDetector } from './policy/outlier.ts';
import { RetryBudget } from './policy/retry.ts';
import { Mirror } from './policy/mirror.ts';
import { RateLimiter, type Fallback } from './policy/ratelimit/limiter.ts';
import { createGatewayMetrics } from './admin/metrics.ts';

export const gatewayFlags: readonly FlagSpec[] = [
  ...consulFlags,
  ...commonFlags,
  { name: 'listen', type: 'addr', default: '127.0.0.1:9080', description: 'where the gateway serves HTTP (loopback by default)' },
  { name: 'admin-addr', type: 'addr', default: '127.0.0.1:9103', description: 'admin endpoint (/metrics, /healthz, /routes)' },
  { name: 'domain', type: 'string', default: 'gantry.test', description: 'every service answers at <service>.<domain>' },
  { name: 'tag-prefix', type: 'string', default: 'urlprefix-', description: "fabio's route tag prefix (urlprefix-host/path strip=/path proto=https weight=0.1)" },
  { name: 'host-tag', type: 'string', default: 'gantry.host', description: 'tag (tag=host) adding a Host route' },
  { name: 'path-tag', type: 'string', default: 'gantry.path', description: 'tag (tag=/prefix) adding a path route under <domain>' },
  { name: 'health', type: 'enum', choices: ['passing', 'warning'], default: 'passing', description: 'instances in this health (or better) receive traffic' },
  { name: 'kv-prefix', type: 'string', default: 'gantry/gateway', description: 'Consul KV prefix of policy/<service> (JSON) and active/<service> (blue/green switch)' },
  { name: 'connect-timeout', type: 'duration', default: '1s', description: 'connecting to an upstream' },
  { name: 'header-timeout', type: 'duration', default: '30s', description: 'request sent → response headers (then 504)' },
  { name: 'idle-timeout', type: 'duration', default: '60s', description: 'no byte of an upstream response body for this long (the answer is cut)' },
  { name: 'client-header-timeout', type: 'duration', default: '10s', description: 'a client must send its request head within this (then 408)' },
  { name: 'client-idle-timeout', type: 'duration', default: '60s', description: 'keep-alive timeout of client connections' },
  { name: 'max-header-bytes', type: 'int', default: 16_384, min: 1024, max: 1_048_576, description: 'largest request head accepted (larger: 400)' },
  { name: 'max-attempts', type: 'int', default: 3, min: 1, max: 10, description: 'attempts a request may take on different instances (retries: connect failures, idempotent methods)' },
  { name: 'retry-budget', type: 'string', default: '0.2', description: 'retries allowed per request over 10 s (plus --retry-min-per-second)' },
  { name: 'retry-min-per-second', type: 'int', default: 10, min: 0, description: 'retries always allowed per second' },
  { name: 'eject-after', type: 'int', default: 5, min: 1, description: 'consecutive failures that eject an upstream' },
  { name: 'eject-time', type: 'duration', default: '5s', description: 'first ejection length (doubles with each ejection, then half-open)' },
  { name: 'eject-max', type: 'duration', default: '60s', description: 'longest ejection' },
  { name: 'pool-max-sockets', type: 'int', default: 512, min: 1, description: 'connections per upstream' },
  { name: 'pool-idle-timeout', type: 'duration', default: '30s', description: 'an idle pooled connection is closed after this' },
  { name: 'mirror-max-inflight', type: 'int', default: 64, min: 1, description: 'mirror copies in flight at once (more: dropped, counted)' },
  { name: 'mirror-max-body', type: 'int', default: 65_536, min: 0, description: 'largest request body copied to a mirror, bytes (larger: dropped, counted)' },
  { name: 'mirror-timeout', type: 'duration', default: '5s', description: 'a mirror copy is abandoned after this' },
  { name: 'ratelimit-redis', type: 'url', schemes: ['redis', 'rediss'], description: 'Redis shared by the gateway replicas for rate limits (none: each replica counts alone)' },
  { name: 'ratelimit-fallback', type: 'enum', choices: ['local', 'open', 'closed'], default: 'local', description: 'who decides while Redis is unreachable: this replica alone, allow all, refuse all' },
  { name: 'ratelimit-timeout', type: 'duration', default: '100ms', description: 'a decision waits this long for Redis before the fallback decides' },
  { name: 'ratelimit-key-prefix', type: 'string', default: 'gantry:ratelimit:', description: 'Redis key prefix of the rate-limit counters' },
  { name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss'], description: 'Redis URL of the audit stream policy changes are written to (off when empty)' },
  { name: 'audit-key', type: 'string', default: 'gantry:audit', description: 'Redis stream key (the registrator\'s)' },
  { name: 'access-log', type: 'boolean', default: true, description: 'one JSON line per request (requestId, route, instance, status, ms)' },
  { name: 'forwarded-proto', type: 'enum', choices: ['http', 'https'], default: 'http', description: 'X-Forwarded-Proto sent upstream (https behind a TLS terminator)' },
  { name: 'consul-wait', type: 'duration', default: '5m', description: 'max wait of each blocking query' },
  { name: 'consul-min-spacing', type: 'duration', default: '20ms', description: 'minimum time between two queries to one Consul endpoint' },
  { name: 'resync-interval', type: 'duration', default: '5m', description: 'full catalog sweep this often, 0 to disable' },
];

export const gatewayCommand: Command = {
  name: 'gateway',
  summary: 'An L7 gateway: routes by Host and path (fabio urlprefix- tags, gantry.host/gantry.path, <service>.<domain>) to healthy Consul instances; canary, blue/green, header match and mirroring from Consul KV; retries, outlier ejection, rate limits shared through Redis.',
  flags: gatewayFlags,
  async run(f, ctx) {
    const log = createLogger({ component: 'gateway', level: f.str('log-level'), destination: ctx.stdout });
    const domain = escapeDnsName(f.str('domain'));
    if (!domain.ok || domain.changed) throw new UsageError(`flag --domain: invalid value ${JSON.stringify(f.str('domain'))}: expected a lower-case DNS name such as gantry.test`);
    const budgetRatio = Number(f.str('retry-budget'));
    if (!(budgetRatio >= 0 && budgetRatio <= 10)) throw new UsageError(`flag --retry-budget: invalid value ${JSON.stringify(f.str('retry-budget'))}: expected a number from 0 to 10`);
    const listen = splitHostPort(f.str('listen'));
    const owner = `gateway@${hostname()}:${listen.port}`;

    const registry = createRegistry('gateway');
    const metrics = createGatewayMetrics(registry);
    // the access log goes out in writes of 4 KB or more (at most 250 ms late; flushed at stop),
    // not one write per line: 0-7 % less CPU per request through a pipe, side by side
    const accessOut = f.bool('access-log') && ctx.stdout === process.stdout
      ? pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 250 })
      : undefined;
    const accessLog = f.bool('access-log')
      ? accessOut
        ? pino({ base: { component: 'gateway' }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, accessOut)
        : log
      : undefined;
    const outliers = new OutlierDetector({ consecutive: f.int('eject-after'), baseEjectMs: f.ms('eject-time'), maxEjectMs: f.ms('eject-max') });
    const pools = new Pools({ maxSockets: f.int('pool-max-sockets'), idleTimeoutMs: f.ms('pool-idle-timeout'), connectTimeoutMs: f.ms('connect-timeout') });
    const mirror = new Mirror(
      { maxInflight: f.int('mirror-max-inflight'), maxBodyBytes: f.int('mirror-max-body'), timeoutMs: f.ms('mirror-timeout') },
      { onSent: (service) => metrics.mirrorSent.inc({ service }), onDrop: (service, reason) => metrics.mirrorDrops.inc({ service, reason }) },
    );
    const limiter = new RateLimiter({
      redisUrl: f.optStr('ratelimit-redis'), keyPrefix: f.str('ratelimit-key-prefix'), fallback: f.str('ratelimit-fallback') as Fallback,
      timeoutMs: f.ms('ratelimit-timeout'), log, onSwitch: (to) => metrics.rateSwitches.inc({ to }),
    });
    const auditUrl = f.optStr('audit-redis');
    const audit = auditUrl ? new AuditWriter({ url: auditUrl, key: f.str('audit-key'), maxLen: 100_000, bufferSize: 1000, log }) : undefined;
    const gateway = new Gateway({
      pools, outliers, mirror, limiter, metrics, log, accessLog,
      budget: new RetryBudget({ ratio: budgetRatio, minPerSecond: f.int('retry-min-per-second'), windowMs: 10_000 }),
      timeouts: { connectMs: f.ms('connect-timeout'), headerMs: f.ms('header-timeout'), idleMs: f.ms('idle-timeout') },
      maxAttempts: f.int('max-attempts'),
      proto: f.str('forwarded-proto') as 'http' | 'https',
    });

    const consul = createConsul(consulConfigFromFlags(f));
    const watcher = new CatalogWatcher({
      consul, log, kvPrefix: f.str('kv-prefix'),
      waitMs: f.ms('consul-wait'), minSpacingMs: f.ms('consul-min-spacing'), resyncMs: f.ms('resync-interval'),
    });
    const routes = new RouteSource({
      source: watcher, outliers, log, owner, host: hostname(),
      build: { domain: domain.value, prefix: f.str('tag-prefix'), hostTag: f.str('host-tag'), pathTag: f.str('path-tag'), includeWarning: f.str('health') === 'warning' },
      swap: (table, info) => {
        gateway.swap(table);
        metrics.tableBuildSeconds.observe(info.buildMs / 1000);
        log.info({ routes: table.size, upstreams: table.upstreamCount, buildMs: Math.round(info.buildMs * 10) / 10, changedServices: info.changed.services, changedRoutes: info.changed.routes, version: info.version }, 'route table swapped');
      },
      audit: audit && ((e) => audit.append(e)),
      onPolicyChange: () => metrics.policyChanges.inc(),
    });

    const server = http.createServer({
      maxHeaderSize: f.int('max-header-bytes'),
      headersTimeout: f.ms('client-header-timeout'),
      requestTimeout: 0,
      keepAliveTimeout: f.ms('client-idle-timeout'),
      requireHostHeader: false, // checked (and logged) by the hostile-request filter
    });
    gateway.attach(server);
    const front = new FastFront({
      http: server, maxHeaderBytes: f.int('max-header-bytes'), headerTimeoutMs: f.ms('client-header-timeout'), idleTimeoutMs: f.ms('client-idle-timeout'),
      serve: (client, head) => gateway.serveFast(client, head),
      onHandOff: (reason) => metrics.handOffs.inc({ reason }),
      onHeadTimeout: (socket) => gateway.headTimeout(socket),
    });
    watcher.start(ctx.signal);
    routes.start();
    const admin = await startAdminServer({
      addr: f.str('admin-addr'), registry, log,
      health: () => {
        const snap = watcher.snapshot();
        const table = gateway.current();
        return {
          ok: table !== undefined,
          consul: { synced: snap !== undefined, lastError: watcher.lastError ?? null, indexes: snap?.indexes ?? null },
          routes: table?.size ?? 0,
          ratelimit: limiter.redisConfigured ? limiter.backend : 'local',
        };
      },
      json: { '/routes': () => gateway.current()?.toJSON() ?? { version: null, routes: [] } },
    });
    try {
      await new Promise<void>((resolve, reject) => {
        front.server.once('error', reject);
        front.server.listen(listen.port, listen.host, () => { front.server.off('error', reject); resolve(); });
      });
    } catch (err) {
      watcher.stop();
      await admin.close();
      throw new UsageError(`flag --listen: cannot listen on ${f.str('listen')}: ${errorMessage(err)}`);
    }
    log.info({ listen: f.str('listen'), admin: admin.url, domain: domain.value, kvPrefix: f.str('kv-prefix'), ratelimit: limiter.redisConfigured ? 'redis' : 'local' }, 'gateway started');
    await new Promise<void>((resolveStop) => {
      if (ctx.signal.aborted) resolveStop();
      ctx.signal.addEventListener('abort', () => resolveStop(), { once: true });
    });
    log.info('stopping: finishing in-flight requests');
    routes.stop();
    watcher.stop();
    front.close();
    server.close();
    server.closeIdleConnections();
    await new Promise((r) => setTimeout(r, 200).unref());
    front.closeAll();
    server.closeAllConnections();
    gateway.closeUpgraded();
    pools.closeAll();
    mirror.close();
    limiter.close();
    await audit?.close();
    await watcher.closed();
    await admin.close();
    consul.close();
    accessOut?.flushSync();
    return 0;
  },
};
