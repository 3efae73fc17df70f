// The gateway's own pipeline (Gateway + RouteSource, wired as `gantry gateway`
// wires them, default flags) on catalog snapshots the caller hands in, without
// Consul: for the bench's table child and the data-path profiling aid.
import { createLogger, createRegistry, type CatalogSnapshot } from '@gantry/core';
import { Gateway, RouteSource, OutlierDetector, RateLimiter } from '@gantry/gateway';
import { Pools } from '../../gateway/src/proxy/pools.ts';
import { Mirror } from '../../gateway/src/policy/mirror.ts';
import { RetryBudget } from '../../gateway/src/policy/retry.ts';
import { createGatewayMetrics } from '../../gateway/src/admin/metrics.ts';

export function standaloneGateway(snapshot: () => CatalogSnapshot, o: { accessLog?: boolean } = {}): { gateway: Gateway; source: RouteSource } {
  const log = createLogger({ component: 'gateway', level: 'warn' });
  const metrics = createGatewayMetrics(createRegistry('gateway'));
  const outliers = new OutlierDetector({ consecutive: 5, baseEjectMs: 5000, maxEjectMs: 60_000 });
  const gateway = new Gateway({
    pools: new Pools({ maxSockets: 512, idleTimeoutMs: 30_000, connectTimeoutMs: 1000 }), outliers,
    budget: new RetryBudget({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }),
    mirror: new Mirror({ maxInflight: 64, maxBodyBytes: 65_536, timeoutMs: 5000 }, { onSent: () => undefined, onDrop: () => undefined }),
    limiter: new RateLimiter({ redisUrl: undefined, keyPrefix: '', fallback: 'local', timeoutMs: 100, log }),
    metrics, log, accessLog: o.accessLog ? createLogger({ component: 'gateway', level: 'info' }) : undefined,
    timeouts: { connectMs: 1000, headerMs: 30_000, idleMs: 60_000 }, maxAttempts: 3, proto: 'http',
  });
  const source = new RouteSource({
    source: { snapshot, onChange: () => () => undefined }, outliers, log, owner: 'bench', host: 'bench',
    build: { domain: 'gantry.test', prefix: 'urlprefix-', hostTag: 'gantry.host', pathTag: 'gantry.path', includeWarning: false },
    swap: (table) => gateway.swap(table),
  });
  return { gateway, source };
}
