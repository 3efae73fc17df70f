// A real redis-server on a free loopback port, nothing kept on disk.
import { join } from 'node:path';
import { systemBin } from '../bins.ts';
import { socketCommand } from '../unix-socket.ts';
import { spawnEngine, tempDir, freePort, waitUntil, restartable, retryPortClash, type ManagedProcess, type RestartableEngine } from '../process.ts';

export interface RedisEngine extends RestartableEngine {
  readonly url: string;
  readonly port: number;
}

export function startRedis(): Promise<RedisEngine> {
  return retryPortClash(startRedisOnce);
}

async function startRedisOnce(): Promise<RedisEngine> {
  const bin = systemBin('redis-server');
  const dir = tempDir('redis');
  const port = await freePort();
  const logFile = join(dir, 'redis.log');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no'];
  const launch = async (): Promise<ManagedProcess> => {
    const proc = spawnEngine('redis', bin, args, { logFile, cwd: dir });
    // QUIT after PING so the server closes the connection and the answer is complete
    await waitUntil('redis', async () => (await socketCommand({ host: '127.0.0.1', port }, 'PING\r\nQUIT\r\n', 1000)).startsWith('+PONG'), { proc, timeoutMs: 15_000 })
      .catch(async (err: unknown) => { await proc.kill(); throw err; }); // nothing left running when it fails
    return proc;
  };
  return Object.assign(await restartable(dir, launch), { url: `redis://127.0.0.1:${port}`, port });
}
