// A real standalone ZooKeeper (Debian's jars) on a free loopback port.
import { join } from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { spawnEngine, tempDir, freePort, waitUntil, restartable, retryPortClash, type ManagedProcess, type RestartableEngine } from '../process.ts';

export interface ZooKeeperEngine extends RestartableEngine {
  readonly connectString: string;
  readonly port: number;
}

const JARS = ['zookeeper.jar', 'zookeeper-jute.jar', 'slf4j-api.jar', 'slf4j-simple.jar', 'netty-handler.jar', 'netty-common.jar', 'netty-buffer.jar', 'netty-transport.jar', 'netty-codec.jar', 'netty-resolver.jar', 'netty-transport-native-epoll.jar', 'netty-transport-native-unix-common.jar', 'metrics-core.jar', 'commons-io.jar', 'snappy-java.jar'];

export function startZooKeeper(): Promise<ZooKeeperEngine> {
  return retryPortClash(startZooKeeperOnce);
}

async function startZooKeeperOnce(): Promise<ZooKeeperEngine> {
  const java = systemBin('java');
  const cp = JARS.map((j) => `/usr/share/java/${j}`).filter((p) => existsSync(p));
  if (!cp.some((p) => p.endsWith('/zookeeper.jar'))) throw new Error('zookeeper: /usr/share/java/zookeeper.jar missing; run make deps (apt-get install zookeeper)');
  const dir = tempDir('zookeeper');
  const port = await freePort();
  const logFile = join(dir, 'zookeeper.log');
  // four-letter words are off by default since 3.5; the ready probe needs `ruok`
  const props = join(dir, 'log.properties');
  writeFileSync(props, 'org.slf4j.simpleLogger.defaultLogLevel=warn\n');
  const args = [
    '-Xms64m', '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1',
    '-Dzookeeper.4lw.commands.whitelist=ruok,srvr,stat',
    '-Dzookeeper.admin.enableServer=false',
    '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    '-cp', cp.join(':'),
    'org.apache.zookeeper.server.ZooKeeperServerMain', String(port), join(dir, 'data'),
  ];
  const launch = async (): Promise<ManagedProcess> => {
    const proc = spawnEngine('zookeeper', java, args, { logFile, cwd: dir });
    await waitUntil('zookeeper', async () => (await socketCommand({ host: '127.0.0.1', port }, 'ruok', 1000)) === 'imok', { proc, timeoutMs: 30_000, intervalMs: 150 });
    return proc;
  };
  return Object.assign(await restartable(dir, launch), { connectString: `127.0.0.1:${port}`, port });
}
