// What the watcher keeps of Consul: the raw JSON shapes it reads, and the
// snapshot it hands to the view builder. Strings here are untrusted: they come
// straight from Consul and are escaped only where they are written (view, helpers).
import type { HealthStatus } from '../model.ts';

export interface ConsulCheck {
  Node: string;
  CheckID: string;
  Status: string;
  ServiceID: string;
  ServiceName: string;
  ModifyIndex?: number;
}

export interface ConsulNodeService {
  ID: string;
  Service: string;
  Tags: string[] | null;
  Address: string;
  Port: number;
  Meta: Record<string, string> | null;
  CreateIndex?: number;
  ModifyIndex?: number;
}

export interface ConsulHealthEntry {
  Node: { Node: string; Address: string };
  Service: ConsulNodeService;
  Checks: ConsulCheck[] | null;
}

export interface ConsulNodeServices {
  Node: { Node: string; Address: string } | null;
  Services: ConsulNodeService[] | null;
}

export interface ConsulKvEntry {
  Key: string;
  Value: string | null;
  Flags?: number;
  ModifyIndex?: number;
}

/** One service instance as the catalog holds it, with its aggregated health. */
export interface CatalogInstance {
  /** node + "\0" + service ID: unique in the datacenter */
  readonly key: string;
  readonly node: string;
  readonly nodeAddress: string;
  readonly id: string;
  readonly service: string;
  /** Service.Address, or the node's address when empty */
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  /** Consul's CreateIndex of the registration: the earlier registration has the lower one */
  readonly createIndex: number;
  readonly modifyIndex: number;
  readonly status: HealthStatus;
}

export interface CatalogSnapshot {
  /** every service name in the catalog, with all its instances (any health) */
  readonly services: ReadonlyMap<string, readonly CatalogInstance[]>;
  /** KV pairs under the watched prefix, keyed by the path below the prefix */
  readonly kv: ReadonlyMap<string, string>;
  readonly indexes: { catalog: string; health: string; kv: string | null };
  /** increments with every change delivered */
  readonly version: number;
}

export const instanceKey = (node: string, serviceId: string): string => `${node}\u0000${serviceId}`;

/** Consul's rule: the worst check wins; no check at all is passing. */
export function worstStatus(statuses: Iterable<string>): HealthStatus {
  let worst: HealthStatus = 'passing';
  for (const s of statuses) {
    if (s === 'critical' || s === 'maintenance') return 'critical';
    if (s === 'warning') worst = 'warning';
    else if (s !== 'passing') return 'critical'; // an unknown status is not healthy
  }
  return worst;
}
