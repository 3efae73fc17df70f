// The gateway's Prometheus metrics (served on the admin endpoint's /metrics).
import { Counter, Gauge, Histogram, type Registry } from '@gantry/core';

export function createGatewayMetrics(registry: Registry) {
  return {
    requests: new Counter({ name: 'gantry_gateway_requests_total', help: 'requests answered, by route and status class', labelNames: ['route', 'code'], registers: [registry] }),
    latency: new Histogram({
      name: 'gantry_gateway_request_duration_seconds', help: 'time from request to the end of the answer, by route',
      labelNames: ['route'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
    }),
    upstreamErrors: new Counter({ name: 'gantry_gateway_upstream_errors_total', help: 'failed upstream attempts, by service and failure', labelNames: ['service', 'failure'], registers: [registry] }),
    retries: new Counter({ name: 'gantry_gateway_retries_total', help: 'attempts sent to another instance, by service', labelNames: ['service'], registers: [registry] }),
    retryBudgetExhausted: new Counter({ name: 'gantry_gateway_retry_budget_exhausted_total', help: 'retries refused because the budget was spent', registers: [registry] }),
    ejections: new Counter({ name: 'gantry_gateway_ejections_total', help: 'upstreams ejected after consecutive failures', registers: [registry] }),
    ejected: new Gauge({ name: 'gantry_gateway_ejected_upstreams', help: 'upstreams currently ejected', registers: [registry] }),
    mirrorSent: new Counter({ name: 'gantry_gateway_mirror_sent_total', help: 'mirrored copies answered, by mirror service', labelNames: ['service'], registers: [registry] }),
    mirrorDrops: new Counter({ name: 'gantry_gateway_mirror_drops_total', help: 'mirror copies dropped, by mirror service and reason', labelNames: ['service', 'reason'], registers: [registry] }),
    rateDecisions: new Counter({ name: 'gantry_gateway_ratelimit_decisions_total', help: 'rate-limit decisions, by backend and result', labelNames: ['backend', 'result'], registers: [registry] }),
    rateSwitches: new Counter({ name: 'gantry_gateway_ratelimit_backend_switches_total', help: 'switches between Redis and the fallback limiter, by destination', labelNames: ['to'], registers: [registry] }),
    handOffs: new Counter({ name: 'gantry_gateway_fast_path_handoffs_total', help: 'client connections the fast path handed to Node\'s HTTP server, by the first request it did not take', labelNames: ['reason'], registers: [registry] }),
    hostile: new Counter({ name: 'gantry_gateway_hostile_requests_total', help: 'requests refused as hostile (400)', registers: [registry] }),
    routes: new Gauge({ name: 'gantry_gateway_routes', help: 'routes in the live table', registers: [registry] }),
    tableBuildSeconds: new Histogram({ name: 'gantry_gateway_table_build_seconds', help: 'time to build a route table', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] }),
    tableSwaps: new Counter({ name: 'gantry_gateway_table_swaps_total', help: 'route tables swapped in', registers: [registry] }),
    policyChanges: new Counter({ name: 'gantry_gateway_policy_changes_total', help: 'KV policy changes applied', registers: [registry] }),
    drainingPools: new Counter({ name: 'gantry_gateway_pools_drained_total', help: 'upstream connection pools drained (instance gone)', registers: [registry] }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
