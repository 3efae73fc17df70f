import { createHash } from 'node:crypto';

// The source-agnostic model: what every source produces and every sink consumes.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A Consul service name, already escaped (see escape.ts). */
export type ServiceName = Brand<string, 'ServiceName'>;
/** A Consul service ID, already escaped, unique on its agent. */
export type InstanceId = Brand<string, 'InstanceId'>;
/** Which registrator wrote a record: `gantry-owner` in Consul Meta. */
export type OwnerId = Brand<string, 'OwnerId'>;

export const asServiceName = (s: string): ServiceName => s as ServiceName;
export const asInstanceId = (s: string): InstanceId => s as InstanceId;
export const asOwnerId = (s: string): OwnerId => s as OwnerId;

export type SourceKind = 'docker' | 'kubernetes' | 'zookeeper' | 'static';
export type HealthStatus = 'passing' | 'warning' | 'critical';

/** Meta keys Gantry writes on every record it owns. */
export const META = {
  owner: 'gantry-owner',
  source: 'gantry-source',
  origin: 'gantry-origin',
  /** hash of the registered definition (see specHash): lets a sink tell "unchanged" without reading checks back */
  spec: 'gantry-spec',
} as const;

/** Where an instance came from: enough to find it again and to stop sync loops. */
export interface Origin {
  source: SourceKind;
  /** container id, namespace/pod, znode path, static file entry */
  ref: string;
  /** the host (Docker host, Kubernetes node, ZooKeeper ensemble) */
  host?: string;
  /** container name, pod name ... */
  name?: string;
  image?: string;
}

export type CheckSpec =
  | { kind: 'http' | 'https'; url: string; method?: string; tlsSkipVerify?: boolean; interval: string; timeout?: string; deregisterAfter?: string; initialStatus?: HealthStatus }
  | { kind: 'tcp'; address: string; interval: string; timeout?: string; deregisterAfter?: string; initialStatus?: HealthStatus }
  | { kind: 'grpc'; address: string; useTls?: boolean; interval: string; timeout?: string; deregisterAfter?: string; initialStatus?: HealthStatus }
  | { kind: 'script'; args: string[]; interval: string; timeout?: string; deregisterAfter?: string; initialStatus?: HealthStatus }
  /** a check Gantry itself keeps up to date (Docker HEALTHCHECK, EndpointSlice ready) */
  | { kind: 'ttl'; ttl: string; deregisterAfter?: string; initialStatus?: HealthStatus; note?: string };

export interface ServiceInstance {
  id: InstanceId;
  name: ServiceName;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  checks: CheckSpec[];
  origin: Origin;
  /** status Gantry reports through its own TTL check, when the source knows it */
  status?: HealthStatus;
  /** put in maintenance (paused container) */
  maintenance?: boolean;
  /** DNS SRV / load-balancing weights (Consul `Weights`) */
  weights?: { passing: number; warning: number };
}

/**
 * A hash of an instance's definition (everything but its status and
 * maintenance flag, and the spec meta itself). Sinks store it in
 * Meta[gantry-spec], so comparing desired with actual needs no read-back of checks.
 */
export function specHash(i: ServiceInstance): string {
  const meta = Object.keys(i.meta).filter((k) => k !== META.spec).sort().map((k) => [k, i.meta[k]]);
  const text = JSON.stringify([i.id, i.name, i.address, i.port, [...i.tags].sort(), meta, i.checks, i.weights ?? null]);
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}

/** The spec hash an instance read from Consul carries, or the one computed from a desired instance. */
export const specOf = (i: ServiceInstance): string => i.meta[META.spec] ?? specHash(i);
