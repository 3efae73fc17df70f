// The templater's Prometheus metrics, in one place so every piece counts the
// same way. Created on a registry (core's createRegistry) the admin server serves.
import { Counter, Gauge, Histogram, type Registry } from '@gantry/core';

export interface TemplaterMetrics {
  readonly registry: Registry;
  /** every HTTP call to Consul, by endpoint kind (catalog, health, kv, service, node) */
  consulRequests: Counter<'endpoint'>;
  consulErrors: Counter<'endpoint'>;
  /** renders by template and outcome (applied, unchanged, render_error, empty, check_failed, reload_failed, runtime) */
  renders: Counter<'template' | 'result'>;
  checkFailures: Counter<'template'>;
  reloadFailures: Counter<'template' | 'reason'>;
  reloads: Counter<'template'>;
  runtimeUpdates: Counter<'template' | 'result'>;
  /** seconds from render start to confirmed apply */
  applySeconds: Histogram<'template' | 'path'>;
  /** names, tags or addresses left out of the view because nothing safe could be made of them */
  skipped: Counter<'reason'>;
  /** 1 when the reload target (HAProxy master) answered at the last probe */
  targetUp: Gauge<'template'>;
  lastSuccess: Gauge<'template'>;
  /** 1 while the last render of the template failed (syntax or runtime error) */
  templateError: Gauge<'template'>;
  services: Gauge;
  instances: Gauge;
  /** addresses of the VIP pool not reserved by any group */
  vipFree: Gauge;
  /** VIPs given back to the pool after their group's grace period */
  vipReleased: Counter;
  /** spare L7 backends in the running config, and how many serve a new service */
  spares: Gauge<'state'>;
  /** host names from tags refused: outside --domain and --allow-host-suffix */
  hostsRefused: Counter;
  /** host names two services claim (the earliest registration keeps each) */
  hostConflicts: Gauge;
}

export function createTemplaterMetrics(registry: Registry): TemplaterMetrics {
  const registers = [registry];
  return {
    registry,
    consulRequests: new Counter({ name: 'gantry_templater_consul_requests_total', help: 'HTTP requests sent to Consul, by endpoint', labelNames: ['endpoint'], registers }),
    consulErrors: new Counter({ name: 'gantry_templater_consul_errors_total', help: 'failed Consul requests, by endpoint', labelNames: ['endpoint'], registers }),
    renders: new Counter({ name: 'gantry_templater_renders_total', help: 'template renders by outcome', labelNames: ['template', 'result'], registers }),
    checkFailures: new Counter({ name: 'gantry_templater_check_failures_total', help: 'renders refused by the check command', labelNames: ['template'], registers }),
    reloadFailures: new Counter({ name: 'gantry_templater_reload_failures_total', help: 'reloads that failed or could not be confirmed', labelNames: ['template', 'reason'], registers }),
    reloads: new Counter({ name: 'gantry_templater_reloads_total', help: 'confirmed reloads', labelNames: ['template'], registers }),
    runtimeUpdates: new Counter({ name: 'gantry_templater_runtime_updates_total', help: 'changes applied through the HAProxy Runtime API without a reload', labelNames: ['template', 'result'], registers }),
    applySeconds: new Histogram({ name: 'gantry_templater_apply_seconds', help: 'render to confirmed apply', labelNames: ['template', 'path'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers }),
    skipped: new Counter({ name: 'gantry_templater_skipped_total', help: 'services, instances or tags left out of the view as unsafe', labelNames: ['reason'], registers }),
    targetUp: new Gauge({ name: 'gantry_templater_target_up', help: '1 when the reload target answered at the last probe', labelNames: ['template'], registers }),
    lastSuccess: new Gauge({ name: 'gantry_templater_last_success_timestamp_seconds', help: 'time of the last successful apply', labelNames: ['template'], registers }),
    templateError: new Gauge({ name: 'gantry_templater_template_error', help: '1 while the last render of the template failed', labelNames: ['template'], registers }),
    services: new Gauge({ name: 'gantry_templater_services', help: 'services in the last view', registers }),
    instances: new Gauge({ name: 'gantry_templater_instances', help: 'instances in the last view (all health states)', registers }),
    vipFree: new Gauge({ name: 'gantry_templater_vip_pool_free', help: 'addresses of the VIP pool not reserved by any group', registers }),
    vipReleased: new Counter({ name: 'gantry_templater_vip_released_total', help: 'VIPs given back to the pool after their group no longer wanted them for the grace period', registers }),
    spares: new Gauge({ name: 'gantry_templater_spare_backends', help: 'spare L7 backends in the running config (state=total) and serving a new service (state=used)', labelNames: ['state'], registers }),
    hostsRefused: new Counter({ name: 'gantry_templater_hosts_refused_total', help: 'host names from tags refused: outside --domain and --allow-host-suffix', registers }),
    hostConflicts: new Gauge({ name: 'gantry_templater_host_conflicts', help: 'host names claimed by more than one service in the last view (the earliest registration keeps each)', registers }),
  };
}
