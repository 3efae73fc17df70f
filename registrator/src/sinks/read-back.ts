// A service as Consul returns it (agent or catalog) → the instance it stands for.
import { asInstanceId, asServiceName, META, type ServiceInstance, type HealthStatus, type SourceKind } from '@gantry/core';

export interface ConsulService {
  ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null;
  Weights?: { Passing: number; Warning: number };
}

export function readBack(s: ConsulService, defaultSource: SourceKind, status?: HealthStatus, maintenance = false): ServiceInstance {
  return {
    id: asInstanceId(s.ID),
    name: asServiceName(s.Service),
    address: s.Address,
    port: s.Port,
    tags: s.Tags ?? [],
    meta: s.Meta ?? {},
    checks: [],
    origin: { source: (s.Meta?.[META.source] ?? defaultSource) as SourceKind, ref: s.Meta?.[META.origin] ?? '' },
    ...(status ? { status } : {}),
    ...(maintenance ? { maintenance: true } : {}),
    ...(s.Weights && (s.Weights.Passing !== 1 || s.Weights.Warning !== 1) ? { weights: { passing: s.Weights.Passing, warning: s.Weights.Warning } } : {}),
  };
}
