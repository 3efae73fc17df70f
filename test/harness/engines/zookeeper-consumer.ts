// A Dubbo consumer on a "VM": test/harness/java/DubboConsumer.java run with
// Debian's Apache Curator (the ZooKeeper client Dubbo 2.7+ uses), watching
// /dubbo/<interface>/providers. Its view is every PROVIDERS line it printed.
// And a Dubbo 3 provider's application-level registration:
// test/harness/java/CuratorProvider.java through Curator's ServiceDiscovery.
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { systemBin, repoRoot } from '../bins.ts';
import { spawnEngine, tempDir, removeDir, waitUntil, type ManagedProcess } from '../process.ts';

const JARS = [
  'curator-framework', 'curator-x-discovery', 'jackson-core', 'jackson-databind', 'jackson-annotations', 'curator-client', 'curator-recipes', 'zookeeper', 'zookeeper-jute', 'guava', 'failureaccess', 'slf4j-api', 'slf4j-simple',
  'netty-handler', 'netty-transport', 'netty-common', 'netty-buffer', 'netty-codec', 'netty-resolver', 'netty-transport-native-unix-common', 'netty-transport-native-epoll',
].map((j) => `/usr/share/java/${j}.jar`);

export interface DubboConsumer {
  readonly proc: ManagedProcess;
  /** the decoded provider URLs of the latest listing */
  providers(): string[];
  /** how many listings it printed */
  listings(): number;
  tail(lines?: number): string;
  stop(): Promise<void>;
}

export async function startDubboConsumer(connectString: string, iface: string, root = '/dubbo'): Promise<DubboConsumer> {
  const required = ['curator-framework', 'curator-recipes', 'zookeeper', 'guava'].map((j) => `/usr/share/java/${j}.jar`);
  const missing = required.filter((j) => !existsSync(j));
  if (missing.length) throw new Error(`dubbo consumer: ${missing.join(', ')} missing; run 'make deps' (apt-get install libcurator-framework-java libcurator-recipes-java)`);
  const dir = tempDir('dubbo-consumer');
  const logFile = join(dir, 'consumer.log');
  const proc = spawnEngine('dubbo consumer', systemBin('java'), [
    '-Xmx96m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    '-cp', JARS.filter((j) => existsSync(j)).join(':'), join(repoRoot, 'test', 'harness', 'java', 'DubboConsumer.java'), connectString, iface, root,
  ], { logFile, cwd: dir });
  const lines = (): string[] => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('PROVIDERS'));
  await waitUntil('dubbo consumer listing', async () => lines().length > 0, { proc, timeoutMs: 60_000, intervalMs: 200 });
  return {
    proc,
    providers: () => { const last = lines().at(-1)!.slice('PROVIDERS'.length).trim(); return last ? last.split('\t') : []; },
    listings: () => lines().length,
    tail: (n) => proc.tail(n),
    async stop() { await proc.stop(); removeDir(dir); },
  };
}

export interface CuratorProvider {
  readonly proc: ManagedProcess;
  /** the node Curator registered, <basePath>/<app>/<id> */
  readonly path: string;
  stop(): Promise<void>;
}

/** Registers one instance the way Dubbo 3 does (Curator ServiceDiscovery, JSON serializer); stop() unregisters it. */
export async function startCuratorProvider(connectString: string, o: { basePath: string; app: string; id: string; address: string; port: number; metadata?: Record<string, string> }): Promise<CuratorProvider> {
  const required = ['curator-framework', 'curator-x-discovery', 'zookeeper', 'jackson-databind'].map((j) => `/usr/share/java/${j}.jar`);
  const missing = required.filter((j) => !existsSync(j));
  if (missing.length) throw new Error(`curator provider: ${missing.join(', ')} missing; run 'make deps' (apt-get install libcurator-discovery-java)`);
  const dir = tempDir('curator-provider');
  const logFile = join(dir, 'provider.log');
  const proc = spawnEngine('curator provider', systemBin('java'), [
    '-Xmx96m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    '-cp', JARS.filter((j) => existsSync(j)).join(':'), join(repoRoot, 'test', 'harness', 'java', 'CuratorProvider.java'),
    connectString, o.basePath, o.app, o.id, o.address, String(o.port), ...Object.entries(o.metadata ?? {}).map(([k, v]) => `${k}=${v}`),
  ], { logFile, cwd: dir });
  const line = await waitUntil('curator provider registered', async () => readFileSync(logFile, 'utf8').split('\n').find((l) => l.startsWith('REGISTERED ')), { proc, timeoutMs: 60_000, intervalMs: 200 });
  return { proc, path: line.slice('REGISTERED '.length).trim(), async stop() { await proc.stop(); removeDir(dir); } };
}
