// A real Consul agent in dev mode (in-memory server) on free loopback ports.
import { join } from 'node:path';
import { consulBin } from '../bins.ts';
import { spawnEngine, tempDir, freePorts, waitUntil, restartable, retryPortClash, type ManagedProcess, type RestartableEngine } from '../process.ts';

/** kill() loses the dev agent's in-memory catalog, as a crashed dev agent would. */
export interface ConsulEngine extends RestartableEngine {
  readonly addr: string; // http://127.0.0.1:port
  readonly httpPort: number;
  readonly dnsPort: number;
  readonly dir: string;
}

export interface ConsulOptions {
  /** extra HCL appended to the config */
  hcl?: string;
  httpPort?: number;
}

/**
 * Starts a dev agent. Free ports are picked, released, then bound by Consul; when
 * another process takes one in between ("address already in use"), it tries again
 * with new ports.
 */
export function startConsul(opts: ConsulOptions = {}): Promise<ConsulEngine> {
  return retryPortClash(() => startConsulOnce(opts));
}

async function startConsulOnce(opts: ConsulOptions): Promise<ConsulEngine> {
  const bin = consulBin();
  const dir = tempDir('consul');
  const [http, dns, serfLan, serfWan, server] = await freePorts(5);
  const httpPort = opts.httpPort ?? http!;
  const args = [
    'agent', '-dev',
    '-bind', '127.0.0.1', '-client', '127.0.0.1',
    '-node', `gantry-dev-${httpPort}`,
    '-hcl', `ports { http = ${httpPort} dns = ${dns} serf_lan = ${serfLan} serf_wan = ${serfWan} server = ${server} grpc = -1 grpc_tls = -1 }`,
    '-hcl', 'disable_update_check = true',
    '-hcl', 'log_level = "warn"',
    ...(opts.hcl ? ['-hcl', opts.hcl] : []),
  ];
  const logFile = join(dir, 'consul.log');
  const addr = `http://127.0.0.1:${httpPort}`;
  const launch = async (): Promise<ManagedProcess> => {
    const proc = spawnEngine('consul', bin, args, { logFile, cwd: dir });
    await waitUntil('consul', async () => {
      const res = await fetch(`${addr}/v1/status/leader`, { signal: AbortSignal.timeout(1000) });
      const leader = (await res.json()) as string;
      return res.ok && leader.length > 0;
    }, { proc, timeoutMs: 30_000 });
    return proc;
  };
  return Object.assign(await restartable(dir, launch), { addr, httpPort, dnsPort: dns!, dir });
}
