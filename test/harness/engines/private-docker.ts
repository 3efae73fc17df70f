// A second, private dockerd for the tests that must stop and restart the Docker
// engine itself: its own socket, data root, exec root and containerd namespace,
// its own bridge (made here; `--bridge none` would make dockerd delete the
// shared engine's docker0) and no iptables rules, so starting and restarting it
// touches nothing of the machine's shared engine. The test image
// is copied in from the shared engine (docker save | load).
import { join } from 'node:path';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import Docker from 'dockerode';
import { systemBin } from '../bins.ts';
import { spawnEngine, tempDir, removeDir, waitUntil, type ManagedProcess } from '../process.ts';
import { ensureDocker, testImage } from './docker.ts';

export interface PrivateDocker {
  readonly socket: string;
  readonly docker: Docker;
  /** SIGTERM dockerd: its containers are stopped, as on a host's `systemctl stop docker` */
  down(): Promise<void>;
  /** dockerd started again on the same socket and data root (restart-policy containers come back) */
  up(): Promise<void>;
  stop(): Promise<void>;
  tail(lines?: number): string;
}

const SYSTEM_CONTAINERD = '/run/containerd/containerd.sock';

export async function startPrivateDocker(): Promise<PrivateDocker> {
  const shared = await ensureDocker();
  const dir = tempDir('dockerd');
  const socket = join(dir, 'docker.sock');
  const ns = `gantry-${dir.slice(-6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  const bridge = makeBridge(ns);
  const args = [
    '--host', `unix://${socket}`,
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'),
    '--config-file', join(dir, 'daemon.json'),
    '--bridge', bridge, '--iptables=false', '--ip6tables=false', '--ip-masq=false',
    '--shutdown-timeout', '2',
    '--containerd-namespace', ns, '--containerd-plugins-namespace', `${ns}-plugins`,
    ...(existsSync(SYSTEM_CONTAINERD) ? ['--containerd', SYSTEM_CONTAINERD] : []),
  ];
  const docker = new Docker({ socketPath: socket });
  let proc: ManagedProcess | undefined;
  const up = async (): Promise<void> => {
    proc = spawnEngine('dockerd', systemBin('dockerd'), args, { logFile: join(dir, 'dockerd.log') });
    const p = proc;
    await waitUntil('private dockerd', async () => { await docker.ping(); return true; }, { proc: p, timeoutMs: 30_000 })
      .catch(async (err: unknown) => { await p.kill(); throw err; });
  };
  const down = async (): Promise<void> => { await proc?.stop(15_000); };
  await up();
  try {
    await copyImage(shared, docker);
  } catch (err) {
    await down();
    cleanup(dir, bridge);
    throw err;
  }
  return {
    socket,
    docker,
    up,
    down,
    async stop() {
      if (proc && !proc.exited()) {
        const list = await docker.listContainers({ all: true }).catch(() => []);
        await Promise.allSettled(list.map((c) => docker.getContainer(c.Id).remove({ force: true })));
      }
      await down();
      cleanup(dir, bridge);
    },
    tail: (n) => proc?.tail(n) ?? '',
  };
}

/** `docker save` from one engine piped into `docker load` on the other. */
async function copyImage(from: Docker, to: Docker): Promise<void> {
  const tar = await from.getImage(testImage).get();
  const res = await to.loadImage(tar);
  await new Promise<void>((resolve, reject) => {
    res.on('data', () => undefined);
    res.on('end', resolve);
    res.on('error', reject);
  });
  await to.getImage(testImage).inspect();
}

const ip = (...args: string[]): string => execFileSync(systemBin('ip'), args, { encoding: 'utf8' });

/** A bridge with a /24 of 10.213.0.0/16 that no route on this host uses yet. */
function makeBridge(ns: string): string {
  const name = `gd${ns.slice(-6)}`.slice(0, 15);
  const routes = ip('-4', 'route', 'show');
  let subnet = '';
  for (let i = 0; i < 50 && !subnet; i++) {
    const n = randomInt(1, 255);
    if (!routes.includes(`10.213.${n}.`)) subnet = `10.213.${n}`;
  }
  if (!subnet) throw new Error('private dockerd: no free 10.213.x.0/24 for its bridge');
  ip('link', 'add', name, 'type', 'bridge');
  ip('addr', 'add', `${subnet}.1/24`, 'dev', name);
  ip('link', 'set', name, 'up');
  return name;
}

/** What dockerd leaves mounted (its netns files) goes before its directory; then the bridge. */
function cleanup(dir: string, bridge: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${dir}/`));
  for (const m of mounts.reverse()) {
    try { execFileSync('umount', ['-l', m]); } catch { /* already gone */ }
  }
  removeDir(dir);
  try { ip('link', 'del', bridge); } catch { /* already gone */ }
}
