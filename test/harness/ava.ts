// Glue between ava and the engines: stop them after the file, and print each
// engine's log tail when a test in the file failed.
import type { TestFn } from 'ava';
import { createConsul, type ConsulClient } from '@gantry/core';
import { startConsul, type ConsulEngine } from './engines/consul.ts';
import { ensureDocker, cleanupContainers } from './engines/docker.ts';
import { startZooKeeper, type ZooKeeperEngine } from './engines/zookeeper.ts';
import { connectZk, type TestZkClient } from './engines/zookeeper-client.ts';

export interface HasLog { readonly name?: string; tail(lines?: number): string; stop(): Promise<void> }

/**
 * Registers engines for cleanup; returns a function to add more. When any test in
 * the file fails, the tail of each engine's log is printed with the failure.
 */
export function manageEngines(test: TestFn<unknown>): (name: string, e: HasLog) => void {
  const engines: Array<[string, HasLog]> = [];
  test.afterEach.always((t) => {
    if (!t.passed) {
      // Gantry's own processes log one line per event: more of theirs to read a failure by
      for (const [name, e] of engines) t.log(`--- ${name} log tail ---\n${e.tail(/^(templater|registrator|gateway|config-client|audit)/.test(name) ? 200 : 30)}`);
    }
  });
  test.after.always(async () => {
    await Promise.allSettled(engines.map(([, e]) => e.stop()));
  });
  return (name, e) => { engines.push([name, e]); };
}

/** The Consul of a test file and the local Docker engine: filled in by the file's test.before. */
export interface ConsulDockerFixture { engine: ConsulEngine; consul: ConsulClient }

/**
 * One Consul dev agent for the file and the shared Docker engine; after the file,
 * the run's containers are removed and the client closed (the agent is tracked).
 */
export function consulWithDocker(test: TestFn<unknown>, track: (name: string, e: HasLog) => void, runId: string): ConsulDockerFixture {
  const fx = {} as ConsulDockerFixture;
  test.before(async () => {
    await ensureDocker();
    fx.engine = await startConsul();
    track('consul', fx.engine);
    fx.consul = createConsul({ addr: fx.engine.addr });
  });
  test.after.always(async () => {
    await cleanupContainers(await ensureDocker(), runId);
    (fx.consul as ConsulClient | undefined)?.close();
  });
  return fx;
}

/** The ZooKeeper and Consul of a test file (and a ZooKeeper client to look with, when asked): filled in by the file's test.before. */
export interface ZooKeeperConsulFixture { zk: ZooKeeperEngine; engine: ConsulEngine; consul: ConsulClient; probe: TestZkClient }

/**
 * One ZooKeeper and one Consul dev agent for the file (both tracked), a Consul client
 * and, with `probe`, a ZooKeeper client (`probe` only then); the clients are closed after the file.
 */
export function consulWithZooKeeper(test: TestFn<unknown>, track: (name: string, e: HasLog) => void, o: { probe?: { sessionTimeoutMs?: number } } = {}): ZooKeeperConsulFixture {
  const fx = {} as ZooKeeperConsulFixture;
  test.before(async () => {
    [fx.zk, fx.engine] = await Promise.all([startZooKeeper(), startConsul()]);
    track('zookeeper', fx.zk);
    track('consul', fx.engine);
    fx.consul = createConsul({ addr: fx.engine.addr });
    if (o.probe) fx.probe = await connectZk(fx.zk.connectString, o.probe.sessionTimeoutMs ? { sessionTimeout: o.probe.sessionTimeoutMs } : {});
  });
  test.after.always(() => {
    (fx.probe as TestZkClient | undefined)?.close();
    (fx.consul as ConsulClient | undefined)?.close();
  });
  return fx;
}
