// The static part of `gantry registrator --static FILE|DIR`: service-definition
// files → reconciler → the local agent (which runs their HTTP/TCP checks).
import { asOwnerId, type Flags, type Logger, type ConsulClient } from '@gantry/core';
import type { AuditWriter } from '@gantry/audit';
import { StaticSource } from './sources/static/source.ts';
import { ConsulAgentSink } from './sinks/consul-agent.ts';
import type { RegistratorMetrics } from './metrics.ts';
import { wire, type Part } from './wire.ts';

export async function startStaticPart(o: { f: Flags; log: Logger; m: RegistratorMetrics; audit: AuditWriter | undefined; consul: ConsulClient; host: string; signal: AbortSignal }): Promise<{ part: Part; running: Promise<void> }> {
  const { f, m } = o;
  const owner = `static@${o.host}`;
  const log = o.log.child({ part: 'static' });
  const source = new StaticSource({ paths: f.list('static'), owner: asOwnerId(owner), log, onProblem: () => m.problems.inc({ source: 'static' }) });
  await source.start(o.signal);
  const sink = new ConsulAgentSink({ consul: o.consul, owner: asOwnerId(owner), log });
  const r = wire('static', source, sink, owner, f, log, m, o.audit);
  log.info({ owner, paths: f.list('static') }, 'static services started');
  return { part: { name: 'static', reconciler: r, healthy: () => true }, running: r.run(o.signal) };
}
