// The static part of `gantry registrator --static FILE|DIR`: service-definition
// files → reconciler → the local agent (which runs their HTTP/TCP checks).
import { asOwnerId, type Flags, type Logger, type ConsulClient } from '@gantry/core';
import type { AuditWriter } from '@gantry/audit';
import type { Heartbeat } from '@gantry/audit/heartbeat';
import { entryFromProblem } from './audit-entry.ts';
import { StaticSource } from './sources/static/source.ts';
import { ConsulAgentSink } from './sinks/consul-agent.ts';
import type { RegistratorMetrics } from './metrics.ts';
import { wire, type Part } from './wire.ts';

export async function startStaticPart(o: { f: Flags; log: Logger; m: RegistratorMetrics; audit: AuditWriter | undefined; consul: ConsulClient; host: string; signal: AbortSignal; heartbeat?: (owner: string, source: string) => Heartbeat | undefined }): Promise<{ part: Part; running: Promise<void> }> {
  const { f, m } = o;
  const owner = `static@${o.host}`;
  const log = o.log.child({ part: 'static' });
  const source = new StaticSource({
    paths: f.list('static'), owner: asOwnerId(owner), log,
    // a refused entry: counted, and in the audit trail (`gantry audit drift` lists it) with file:line:col and why
    onProblem: (p) => {
      m.problems.inc({ source: 'static' });
      o.audit?.append(entryFromProblem(owner, 'static', { container: p.file, name: '', where: `${p.file}:${p.line}:${p.col}`, reason: p.reason }));
    },
  });
  await source.start(o.signal);
  const sink = new ConsulAgentSink({ consul: o.consul, owner: asOwnerId(owner), log });
  const r = wire('static', source, sink, owner, f, log, m, o.audit, undefined, o.heartbeat?.(owner, 'static'));
  log.info({ owner, paths: f.list('static') }, 'static services started');
  return { part: { name: 'static', reconciler: r, healthy: () => true }, running: r.run(o.signal) };
}
