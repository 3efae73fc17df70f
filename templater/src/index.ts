// @gantry/templater: Consul → view → Handlebars → check → atomic write → reload,
// with the HAProxy Runtime API for instance changes. `gantry templater` is command.ts.
// The catalog watcher it reads Consul through lives in @gantry/core (core/src/consul/);
// the names below stay for existing importers, new code imports them from @gantry/core.
export { templater, templaterFlags } from './command.ts';
export { CatalogWatcher as ConsulWatcher, runBlockingQuery, type CatalogWatcherOptions as WatcherOptions, type BlockingQueryOptions, type CatalogInstance, type CatalogSnapshot } from '@gantry/core';
export { buildView, skeletonOf, type View, type ViewOptions, type GroupView, type ServiceView, type InstanceView, type SlotView, type HealthFilter } from './view.ts';
export { compileTemplate, TemplateError, type CompiledTemplate } from './render/engine.ts';
export { Runner, type RunnerOptions, type TemplateStatus } from './runner.ts';
export { RouteTable } from './runtime/routes.ts';
export { BUILTINS, loadConfigFile, parseWait, type TemplateSpec, type ReloadSpec } from './config.ts';
export { applyRender, type ApplyOutcome, type ApplyTarget } from './apply/apply.ts';
export { checkEnv } from './apply/check.ts';
export { MasterReloader, CommandReloader, SignalReloader, parseShowProc, type Reloader } from './apply/reload.ts';
export { RuntimeApi, planRuntime, parseServersState } from './runtime/runtime-api.ts';
export { SlotTable } from './runtime/slots.ts';
export { VipPool, parseCidr } from './vip/pool.ts';
export { VipInterface } from './vip/iface.ts';
export { createTemplaterMetrics, type TemplaterMetrics } from './metrics.ts';
