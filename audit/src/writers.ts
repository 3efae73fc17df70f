// Reads every writer's heartbeat (gantry/writers/<owner>/<instance>) and says,
// per owner, whether one of its instances is alive and when it was last seen.
import { errorMessage, type ConsulClient } from '@gantry/core';
import { WRITERS_PREFIX, type HeartbeatValue } from './heartbeat.ts';

export interface WriterInstance extends HeartbeatValue { key: string; alive: boolean }

export interface OwnerLiveness {
  owner: string;
  alive: boolean;
  source: string;
  /** latest heartbeat of any instance (ISO) */
  lastSeen: string;
  instances: WriterInstance[];
}

export interface BadHeartbeat { key: string; error: string }

interface KvEntry { Key: string; Value: string | null; Session?: string }

function parseHeartbeat(key: string, value: string | null): HeartbeatValue {
  if (!value) throw new Error('empty value');
  const v = JSON.parse(Buffer.from(value, 'base64').toString('utf8')) as Partial<HeartbeatValue>;
  for (const f of ['owner', 'instance', 'source', 'heartbeatAt', 'startedAt'] as const) {
    if (typeof v[f] !== 'string') throw new Error(`field ${f} is missing or not a string`);
  }
  if (typeof v.ttlMs !== 'number') throw new Error('field ttlMs is missing or not a number');
  if (Number.isNaN(Date.parse(v.heartbeatAt!))) throw new Error(`heartbeatAt ${JSON.stringify(v.heartbeatAt)} is not a time`);
  void key;
  return v as HeartbeatValue;
}

export async function readWriters(consul: ConsulClient, prefix = WRITERS_PREFIX): Promise<{ owners: Map<string, OwnerLiveness>; bad: BadHeartbeat[] }> {
  const res = await consul.request<KvEntry[] | null>('GET', `/v1/kv/${prefix}/`, { query: { recurse: true }, timeoutMs: 30_000 });
  const owners = new Map<string, OwnerLiveness>();
  const bad: BadHeartbeat[] = [];
  for (const kv of res.status === 404 ? [] : res.body ?? []) {
    let v: HeartbeatValue;
    try {
      v = parseHeartbeat(kv.Key, kv.Value);
    } catch (err) {
      bad.push({ key: kv.Key, error: `heartbeat ${kv.Key}: ${errorMessage(err)}` });
      continue;
    }
    const inst: WriterInstance = { ...v, key: kv.Key, alive: Boolean(kv.Session) };
    const o = owners.get(v.owner);
    if (!o) owners.set(v.owner, { owner: v.owner, alive: inst.alive, source: v.source, lastSeen: v.heartbeatAt, instances: [inst] });
    else {
      o.instances.push(inst);
      o.alive ||= inst.alive;
      if (Date.parse(v.heartbeatAt) > Date.parse(o.lastSeen)) o.lastSeen = v.heartbeatAt;
    }
  }
  return { owners, bad };
}
