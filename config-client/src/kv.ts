// One read of a Consul KV prefix (GET /v1/kv/<prefix>?recurse), blocking when
// given an index. Values come base64-encoded; a 404 means "no keys" and still
// carries X-Consul-Index, so it is an empty answer, not an error.
import { GantryError, type ConsulClient } from '@gantry/core';
import type { RawEntry } from './layers.ts';
import type { Consistency } from './types.ts';

interface KvPair {
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

export interface FetchOptions {
  consistency: Consistency;
  /** blocking query: the index to wait past */
  index?: string | undefined;
  /** blocking query: Go duration */
  wait?: string | undefined;
  timeoutMs: number;
  signal: AbortSignal;
}

/** The URL path of a key: each segment percent-encoded. */
export function kvPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
}

export async function fetchPrefix(consul: ConsulClient, prefix: string, opts: FetchOptions): Promise<KvAnswer> {
  const res = await consul.request<KvPair[] | string>('GET', kvPath(prefix), {
    // only the parameters that are set: Consul reads ?stale and ?consistent by their presence
    query: { recurse: true, ...(opts.consistency === 'default' ? {} : { [opts.consistency]: true }) },
    index: opts.index,
    wait: opts.index === undefined ? undefined : opts.wait,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
  });
  const filteredByAcl = res.headers['x-consul-results-filtered-by-acls'] === 'true';
  if (res.status === 404) return { entries: [], index: res.index, filteredByAcl };
  if (!Array.isArray(res.body)) {
    throw new GantryError('E_CONSUL_HTTP', `Consul GET ${kvPath(prefix)}: expected a list of KV pairs, got ${typeof res.body}`);
  }
  const entries: RawEntry[] = new Array<RawEntry>(res.body.length);
  for (let i = 0; i < res.body.length; i++) {
    const p = res.body[i]!;
    entries[i] = { key: p.Key, value: p.Value === null ? '' : Buffer.from(p.Value, 'base64').toString('utf8') };
  }
  return { entries, index: res.index, filteredByAcl };
}
