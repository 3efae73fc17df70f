// What a read of a Consul KV prefix (GET /v1/kv/<prefix>?recurse) means to the
// config client. Values come base64-encoded; a 404 means "no keys" and still
// carries X-Consul-Index, so it is an empty answer, not an error. The read
// itself is core's blocking query (watcher.ts).
import type { IncomingHttpHeaders } from 'node:http';
import { GantryError } from '@gantry/core';
import type { RawEntry } from './layers.ts';
import type { Consistency } from './types.ts';

export interface KvPair {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

export interface KvAnswer {
  entries: RawEntry[];
  /** X-Consul-Index */
  index: string | undefined;
  /** Consul left out keys the ACL token may not read (X-Consul-Results-Filtered-By-ACLs) */
  filteredByAcl: boolean;
}

/** The URL path of a key: each segment percent-encoded. */
export function kvPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** the query of a recursive read; only the parameters that are set: Consul reads ?stale and ?consistent by their presence */
export function kvQuery(consistency: Consistency): Record<string, boolean> {
  return { recurse: true, ...(consistency === 'default' ? {} : { [consistency]: true }) };
}

/** an answer of a recursive read (a 404 comes as an empty list) */
export function toKvAnswer(prefix: string, body: KvPair[] | string, headers: IncomingHttpHeaders): KvAnswer {
  const filteredByAcl = headers['x-consul-results-filtered-by-acls'] === 'true';
  const index = typeof headers['x-consul-index'] === 'string' ? headers['x-consul-index'] : undefined;
  if (!Array.isArray(body)) {
    throw new GantryError('E_CONSUL_HTTP', `Consul GET ${kvPath(prefix)}: expected a list of KV pairs, got ${typeof body}`);
  }
  const entries: RawEntry[] = new Array<RawEntry>(body.length);
  for (let i = 0; i < body.length; i++) {
    const p = body[i]!;
    entries[i] = { key: p.Key, value: p.Value === null ? '' : Buffer.from(p.Value, 'base64').toString('utf8') };
  }
  return { entries, index, filteredByAcl };
}
