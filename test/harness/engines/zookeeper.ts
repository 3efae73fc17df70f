// A real standalone ZooKeeper (Debian's jars) on a free loopback port.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { spawnEngine, tempDir, freePort, waitUntil, restartable, retryPortClash, type ManagedProcess, type RestartableEngine } from '../process.ts';

export interface ZooKeeperEngine extends RestartableEngine {
  readonly connectString: string;
  readonly port: number;
}

// Debian's zookeeper.jar names its dependencies (jute, netty, slf4j-api, ...) in its
// manifest's Class-Path; only a slf4j binding is missing (libslf4j-java), for the log.
const JARS = ['/usr/share/java/zookeeper.jar', '/usr/share/java/slf4j-simple.jar'];

export function startZooKeeper(): Promise<ZooKeeperEngine> {
  return retryPortClash(startZooKeeperOnce);
}

async function startZooKeeperOnce(): Promise<ZooKeeperEngine> {
  const java = systemBin('java');
  const missing = JARS.filter((j) => !existsSync(j));
  if (missing.length > 0) throw new Error(`zookeeper: ${missing.join(', ')} missing; run 'make deps' (apt-get install zookeeper libslf4j-java)`);
  const dir = tempDir('zookeeper');
  const port = await freePort();
  const logFile = join(dir, 'zookeeper.log');
  const args = [
    '-Xms64m', '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1',
    // four-letter words are off by default since 3.5; the ready probe needs `srvr`
    '-Dzookeeper.4lw.commands.whitelist=ruok,srvr,stat',
    '-Dzookeeper.admin.enableServer=false',
    '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    '-cp', JARS.join(':'),
    'org.apache.zookeeper.server.ZooKeeperServerMain', String(port), join(dir, 'data'),
  ];
  const launch = async (): Promise<ManagedProcess> => {
    const proc = spawnEngine('zookeeper', java, args, { logFile, cwd: dir });
    // `ruok` says imok before the database is loaded; `srvr` names the mode only once it serves
    await waitUntil('zookeeper', async () => (await socketCommand({ host: '127.0.0.1', port }, 'srvr', 1000)).includes('Mode: standalone'), { proc, timeoutMs: 30_000, intervalMs: 100 })
      .catch(async (err: unknown) => { await proc.kill(); throw err; }); // nothing left running when it fails
    return proc;
  };
  return Object.assign(await restartable(dir, launch), { connectString: `127.0.0.1:${port}`, port });
}
