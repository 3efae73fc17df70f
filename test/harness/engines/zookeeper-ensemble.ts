// A real three-server ZooKeeper ensemble (Debian's jars, QuorumPeerMain) on
// loopback ports, each server in its own dir; any server can be killed and
// started again.
import { join } from 'node:path';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { spawnEngine, tempDir, freePorts, waitUntil, removeDir, retryPortClash, type ManagedProcess } from '../process.ts';

const JARS = ['/usr/share/java/zookeeper.jar', '/usr/share/java/slf4j-simple.jar'];

export interface ZooKeeperEnsemble {
  /** every server, comma separated (what a client is given) */
  readonly connectString: string;
  readonly clientPorts: number[];
  procs: ManagedProcess[];
  /** SIGKILL server i (0-based) */
  kill(i: number): Promise<void>;
  /** start server i again on its ports and data */
  restart(i: number): Promise<void>;
  /** the mode `srvr` reports for server i: leader, follower, or undefined when it does not serve */
  mode(i: number): Promise<string | undefined>;
  tail(lines?: number): string;
  stop(): Promise<void>;
}

export function startZooKeeperEnsemble(size = 3): Promise<ZooKeeperEnsemble> {
  return retryPortClash(() => startOnce(size));
}

async function startOnce(size: number): Promise<ZooKeeperEnsemble> {
  const missing = JARS.filter((j) => !existsSync(j));
  if (missing.length) throw new Error(`zookeeper: ${missing.join(', ')} missing; run 'make deps' (apt-get install zookeeper libslf4j-java)`);
  const java = systemBin('java');
  const dir = tempDir('zk-ensemble');
  const ports = await freePorts(size * 3);
  const clientPorts = ports.slice(0, size);
  const servers = Array.from({ length: size }, (_, i) => `server.${i + 1}=127.0.0.1:${ports[size + i]}:${ports[2 * size + i]}`);
  const cfgs: string[] = [];
  for (let i = 0; i < size; i++) {
    const data = join(dir, `s${i + 1}`);
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'myid'), `${i + 1}\n`);
    const cfg = join(data, 'zoo.cfg');
    writeFileSync(cfg, [
      'tickTime=500', 'initLimit=20', 'syncLimit=10', `dataDir=${data}`, `clientPort=${clientPorts[i]}`, 'clientPortAddress=127.0.0.1',
      'admin.enableServer=false', '4lw.commands.whitelist=srvr,ruok,stat', 'maxSessionTimeout=60000', ...servers, '',
    ].join('\n'));
    cfgs.push(cfg);
  }
  const launch = (i: number): ManagedProcess => spawnEngine(`zookeeper-${i + 1}`, java, [
    '-Xms32m', '-Xmx160m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    '-cp', JARS.join(':'), 'org.apache.zookeeper.server.quorum.QuorumPeerMain', cfgs[i]!,
  ], { logFile: join(dir, `s${i + 1}`, 'zookeeper.log'), cwd: dir });
  const mode = async (i: number): Promise<string | undefined> => {
    const text = await socketCommand({ host: '127.0.0.1', port: clientPorts[i]! }, 'srvr', 1000).catch(() => '');
    return /Mode: (\w+)/.exec(text)?.[1];
  };
  const procs = clientPorts.map((_, i) => launch(i));
  const e: ZooKeeperEnsemble = {
    connectString: clientPorts.map((p) => `127.0.0.1:${p}`).join(','),
    clientPorts,
    procs,
    async kill(i) { await e.procs[i]!.kill(); },
    async restart(i) {
      e.procs[i] = launch(i);
      await waitUntil(`zookeeper-${i + 1} serving again`, async () => (await mode(i)) !== undefined, { proc: e.procs[i], timeoutMs: 60_000, intervalMs: 200 });
    },
    mode,
    tail: (n) => e.procs.map((p) => `--- ${p.name}\n${p.tail(n)}`).join('\n'),
    async stop() { await Promise.allSettled(e.procs.map((p) => p.stop())); removeDir(dir); },
  };
  try {
    await waitUntil('zookeeper ensemble has a leader and followers', async () => {
      const modes = await Promise.all(clientPorts.map((_, i) => mode(i)));
      return modes.filter((m) => m === 'leader').length === 1 && modes.filter((m) => m === 'follower').length === size - 1;
    }, { timeoutMs: 90_000, intervalMs: 250 });
  } catch (err) {
    await e.stop().catch(() => undefined);
    throw err;
  }
  return e;
}
