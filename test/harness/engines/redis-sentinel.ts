// Redis with a replica and three Sentinels (Debian's redis-server and
// redis-sentinel) on free loopback ports, nothing kept on disk. Sentinel
// promotes the replica about a second after the master stops answering.
// `url` is what Gantry's parts take: redis+sentinel://h:p,h:p,h:p/<master>,
// with the password (when one is set) in the userinfo.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { spawnEngine, tempDir, removeDir, freePorts, waitUntil, sleep, type ManagedProcess } from '../process.ts';

export interface RedisNode {
  readonly port: number;
  proc: ManagedProcess;
  running(): boolean;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

export interface RedisSentinelEngine {
  readonly masterName: string;
  /** redis+sentinel://[:password@]127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/<masterName> */
  readonly url: string;
  readonly password: string | undefined;
  /** the two data nodes (which one is master changes with failovers) */
  readonly nodes: RedisNode[];
  readonly sentinels: RedisNode[];
  /** the master's port as the sentinels see it (a majority agreeing) */
  masterPort(): Promise<number>;
  /** the data node that is master now */
  master(): Promise<RedisNode>;
  /** SIGKILL the master; resolves with the ms until the sentinels name another one */
  killMaster(timeoutMs?: number): Promise<{ killed: RedisNode; failoverMs: number }>;
  /** one command to a data node, RESP inline; answers raw */
  command(node: RedisNode, command: string): Promise<string>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

export interface RedisSentinelOptions {
  masterName?: string;
  password?: string;
  /** down-after-milliseconds (default 1000) */
  downAfterMs?: number;
  /** the address every node binds and is announced at (default 127.0.0.1) */
  bind?: string;
}

/** the bulk strings of a RESP reply, in order */
export function respStrings(reply: string): string[] {
  const lines = reply.split('\r\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith('$') && lines[i] !== '$-1') out.push(lines[++i] ?? '');
    else if (lines[i]!.startsWith('+')) out.push(lines[i]!.slice(1));
  }
  return out;
}

export async function startRedisSentinel(opts: RedisSentinelOptions = {}): Promise<RedisSentinelEngine> {
  const masterName = opts.masterName ?? 'gantry';
  const password = opts.password;
  const dir = tempDir('redis-sentinel');
  const host = opts.bind ?? '127.0.0.1';
  const [p0, p1, s0, s1, s2] = await freePorts(5, host);
  const auth = password ? `AUTH ${password}\r\n` : '';
  const server = systemBin('redis-server');
  const sentinelBin = systemBin('redis-sentinel');
  const all: RedisNode[] = [];

  const makeNode = (name: string, port: number, launchArgs: () => [string, string[]], ready: string): RedisNode => {
    const logFile = join(dir, `${name}.log`);
    const node: RedisNode = {
      port,
      proc: undefined as unknown as ManagedProcess,
      running: () => node.proc !== undefined && !node.proc.exited(),
      async kill() { await node.proc.kill(); },
      async restart() {
        const [cmd, args] = launchArgs();
        const proc = spawnEngine(`redis ${name}`, cmd, args, { logFile, cwd: dir });
        node.proc = proc;
        await waitUntil(`redis ${name}`, async () => (await socketCommand({ host, port }, `${ready}QUIT\r\n`, 1000)).includes('+PONG'), { proc, timeoutMs: 15_000 })
          .catch(async (err: unknown) => { await proc.kill(); throw err; });
      },
    };
    all.push(node);
    return node;
  };

  const dataArgs = (port: number, replicaOf?: number): string[] => [
    '--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no',
    '--protected-mode', 'no', '--dbfilename', `dump-${port}.rdb`,
    ...(password ? ['--requirepass', password, '--masterauth', password] : []),
    ...(replicaOf ? ['--replicaof', host, String(replicaOf)] : []),
  ];
  // the first node starts as master, the second as its replica; after a failover
  // a restarted node starts as a replica of whoever is master then
  let masterNow = p0!;
  const n0 = makeNode('data-0', p0!, () => [server, dataArgs(p0!, masterNow === p0 ? undefined : masterNow)], `${auth}PING\r\n`);
  const n1 = makeNode('data-1', p1!, () => [server, dataArgs(p1!, masterNow === p1 ? undefined : masterNow)], `${auth}PING\r\n`);
  const sentinels = [s0!, s1!, s2!].map((port, i) => {
    const conf = join(dir, `sentinel-${i}.conf`);
    writeFileSync(conf, [
      `port ${port}`, `bind ${host}`, 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${masterName} ${host} ${p0} 2`,
      `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${masterName} 10000`,
      `sentinel parallel-syncs ${masterName} 1`,
      ...(password ? [`sentinel auth-pass ${masterName} ${password}`] : []),
      '',
    ].join('\n'));
    return makeNode(`sentinel-${i}`, port, () => [sentinelBin, [conf]], 'PING\r\n');
  });

  const askSentinel = async (port: number): Promise<number | undefined> => {
    const reply = await socketCommand({ host, port }, `SENTINEL get-master-addr-by-name ${masterName}\r\nQUIT\r\n`, 1000);
    const [, p] = respStrings(reply);
    return p ? Number(p) : undefined;
  };

  const engine: RedisSentinelEngine = {
    masterName,
    password,
    url: `redis+sentinel://${password ? `:${encodeURIComponent(password)}@` : ''}${sentinels.map((s) => `${host}:${s.port}`).join(',')}/${masterName}`,
    nodes: [n0, n1],
    sentinels,
    async masterPort() {
      return waitUntil('a master the sentinels agree on', async () => {
        const votes = new Map<number, number>();
        for (const s of sentinels) {
          if (!s.running()) continue;
          const p = await askSentinel(s.port).catch(() => undefined);
          if (p) votes.set(p, (votes.get(p) ?? 0) + 1);
        }
        for (const [p, n] of votes) if (n >= 2) return p;
        return undefined;
      }, { timeoutMs: 30_000, intervalMs: 100 });
    },
    async master() {
      const p = await engine.masterPort();
      return p === n0.port ? n0 : n1;
    },
    async killMaster(timeoutMs = 60_000) {
      const killed = await engine.master();
      const t0 = Date.now();
      await killed.kill();
      const next = await waitUntil('sentinel failover', async () => {
        const p = await engine.masterPort().catch(() => undefined);
        if (p === undefined || p === killed.port) return undefined;
        // promoted: it answers as master
        const role = await socketCommand({ host, port: p }, `${auth}ROLE\r\nQUIT\r\n`, 1000).catch(() => '');
        return role.includes('master') ? p : undefined;
      }, { timeoutMs, intervalMs: 100 });
      masterNow = next;
      return { killed, failoverMs: Date.now() - t0 };
    },
    command: (node, command) => socketCommand({ host, port: node.port }, `${auth}${command}\r\nQUIT\r\n`, 5000),
    async stop() {
      await Promise.allSettled(all.map((n) => n.proc?.stop(2000)));
      removeDir(dir);
    },
    tail(lines = 10) {
      return all.map((n) => `--- ${n.proc?.name ?? '?'} ---\n${n.proc?.tail(lines) ?? ''}`).join('\n');
    },
  };

  try {
    await n0.restart();
    await n1.restart();
    await Promise.all(sentinels.map((s) => s.restart()));
    // the replica is in sync and every sentinel knows the replica and the other sentinels
    await waitUntil('redis replica in sync', async () => (await engine.command(n1, 'INFO replication')).includes('master_link_status:up'), { timeoutMs: 30_000, intervalMs: 100 });
    await waitUntil('sentinels see the replica and each other', async () => {
      for (const s of sentinels) {
        const reply = await socketCommand({ host, port: s.port }, `SENTINEL master ${masterName}\r\nQUIT\r\n`, 1000);
        const f = respStrings(reply);
        const field = (k: string): number => Number(f[f.indexOf(k) + 1] ?? 0);
        if (field('num-slaves') < 1 || field('num-other-sentinels') < 2) return false;
      }
      return true;
    }, { timeoutMs: 30_000, intervalMs: 200 });
  } catch (err) {
    await engine.stop();
    throw err;
  }
  await sleep(0);
  return engine;
}
