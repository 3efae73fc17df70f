// @gantry/gateway: `gantry gateway`, an L7 proxy from the Consul catalog.
//   routes/  tags → route specs, the table built from a catalog snapshot + KV, swapped atomically
//   proxy/   the data path only: pools, forwarding, upgrades, header rewriting, hostile-request checks
//   policy/  KV policy, subset choice (split, match, blue/green), mirroring, retries, ejection, rate limits
//   admin/   metrics (the admin endpoint itself is core's)
export { gatewayCommand, gatewayFlags } from './command.ts';
export { Gateway, type GatewayOptions } from './gateway.ts';
export { RouteTable, type Route, type Target, type Upstream } from './routes/table.ts';
export { buildTable, TableBuilder, type BuildOptions, type BuildResult } from './routes/builder.ts';
export { RouteSource, type SnapshotSource } from './routes/source.ts';
export { routeSpecs, normalizeHost, type RouteSpec, type TagOptions } from './routes/tags.ts';
export { parsePolicies, parseServicePolicy, inSubset, type ServicePolicy, type PolicySet } from './policy/config.ts';
export { OutlierDetector } from './policy/outlier.ts';
export { RateLimiter, type Fallback } from './policy/ratelimit/limiter.ts';
export { LocalWindows, rateLimitHeaders, type RateDecision } from './policy/ratelimit/window.ts';
