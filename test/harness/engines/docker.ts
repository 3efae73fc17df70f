// The shared Docker engine (one dockerd for the machine, started by
// scripts/ensure-dockerd.sh). Tests label their containers with a run id and
// remove them afterwards.
import Docker from 'dockerode';
import { randomBytes } from 'node:crypto';

export const testImage = process.env.GANTRY_TEST_IMAGE ?? 'gantry/busybox:test';
export const RUN_LABEL = 'gantry.test';
export const dockerSocket = process.env.GANTRY_DOCKER_SOCKET ?? '/var/run/docker.sock';

export const newRunId = (): string => `t${randomBytes(5).toString('hex')}`;

export async function ensureDocker(socketPath = dockerSocket): Promise<Docker> {
  const docker = new Docker({ socketPath });
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`docker: no engine answers on ${socketPath} (${err instanceof Error ? err.message : String(err)}); run 'make deps' (scripts/ensure-dockerd.sh)`);
  }
  try {
    await docker.getImage(testImage).inspect();
  } catch {
    throw new Error(`docker: test image ${testImage} missing; run 'make deps' (scripts/ensure-dockerd.sh makes it)`);
  }
  return docker;
}

export interface RunOptions {
  runId: string;
  name?: string;
  labels?: Record<string, string>;
  env?: Record<string, string>;
  cmd?: string[];
  /** container port ("8080/tcp") → host port ("" or "0" for a random one) */
  publish?: Record<string, string>;
  expose?: string[];
  network?: string;
  healthcheck?: { test: string[]; intervalMs: number; timeoutMs?: number; retries?: number; startPeriodMs?: number };
  start?: boolean;
}

export async function runContainer(docker: Docker, o: RunOptions): Promise<Docker.Container> {
  const exposed: Record<string, object> = {};
  for (const p of [...Object.keys(o.publish ?? {}), ...(o.expose ?? [])]) exposed[p.includes('/') ? p : `${p}/tcp`] = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const [p, host] of Object.entries(o.publish ?? {})) bindings[p.includes('/') ? p : `${p}/tcp`] = [{ HostIp: '127.0.0.1', HostPort: host === '0' ? '' : host }];
  const ms = (v: number): number => v * 1e6;
  const container = await docker.createContainer({
    Image: testImage,
    name: o.name,
    Cmd: o.cmd,
    Env: Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`),
    Labels: { ...(o.labels ?? {}), [RUN_LABEL]: o.runId },
    ExposedPorts: exposed,
    Healthcheck: o.healthcheck && { Test: o.healthcheck.test, Interval: ms(o.healthcheck.intervalMs), Timeout: ms(o.healthcheck.timeoutMs ?? 1000), Retries: o.healthcheck.retries ?? 1, StartPeriod: ms(o.healthcheck.startPeriodMs ?? 0) },
    HostConfig: { PortBindings: bindings, NetworkMode: o.network, AutoRemove: false },
  });
  if (o.start !== false) await container.start();
  return container;
}

/** Removes (force) every container labelled with this run id; returns how many. */
export async function cleanupContainers(docker: Docker, runId: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${RUN_LABEL}=${runId}`] } });
  await Promise.allSettled(list.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  return list.length;
}
