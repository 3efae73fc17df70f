// What the drift and page tests share: a Consul whose sessions may be short
// (session_ttl_min 1s), a Redis, the Docker engine, and two real registrators
// that split the test's containers by a label (owner A and owner B), each with a
// 2 s heartbeat.
import type Docker from 'dockerode';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { startRedis, type RedisEngine } from '../../test/harness/engines/redis.ts';
import { ensureDocker, runContainer, newRunId } from '../../test/harness/engines/docker.ts';
import { startGantry, type GantryProcess } from '../../test/harness/gantry.ts';
import type { HasLog } from '../../test/harness/ava.ts';

export interface AuditStack {
  runId: string;
  key: string;
  ownerA: string;
  ownerB: string;
  docker: Docker;
  consulEngine: ConsulEngine;
  redis: RedisEngine;
  consul: ConsulClient;
  regA: GantryProcess;
  regB: GantryProcess;
  /** a container registered by A ('a') or B ('b') */
  run(which: 'a' | 'b', name: string, env: Record<string, string>): Promise<Docker.Container>;
}

export async function startAuditStack(track: (name: string, e: HasLog) => void): Promise<AuditStack> {
  const runId = newRunId();
  const key = `audit:${runId}`;
  const docker = await ensureDocker();
  const [consulEngine, redis] = await Promise.all([startConsul({ hcl: 'session_ttl_min = "1s"' }), startRedis()]);
  track('consul', consulEngine);
  track('redis', redis);
  const registrator = (owner: string, which: string): Promise<GantryProcess> => startGantry('registrator', [
    '--owner', owner, '--require-label', `gantry.audit-owner=${which}-${runId}`, '--resync', '2s', '--heartbeat-ttl', '2s',
    '--audit-redis', redis.url, '--audit-key', key,
  ], { env: { CONSUL_HTTP_ADDR: consulEngine.addr } });
  const ownerA = `reg-a-${runId}`;
  const ownerB = `reg-b-${runId}`;
  const [regA, regB] = await Promise.all([registrator(ownerA, 'a'), registrator(ownerB, 'b')]);
  track('registrator A', regA);
  track('registrator B', regB);
  return {
    runId, key, ownerA, ownerB, docker, consulEngine, redis, consul: createConsul({ addr: consulEngine.addr }), regA, regB,
    run: (which, name, env) => runContainer(docker, { runId, name: `${runId}-${name}`, publish: { '8080/tcp': '0' }, env, labels: { 'gantry.audit-owner': `${which}-${runId}` } }),
  };
}
