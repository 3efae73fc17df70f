// The three Docker Engine API calls the registrator needs (list, inspect, the
// event stream), over the unix socket with node:http. Measured in
// bench/registrator.ts: dockerode (with docker-modem and ssh2) cost the
// registrator ~30 MB of RSS for these three calls.
//
// Every call has a timeout: list and inspect as a whole, the event stream
// until its response headers (an open stream is silent for as long as nothing
// happens). Errors carry a stable code: E_DOCKER_NOT_FOUND (404: the container
// is gone), E_DOCKER_HTTP (any other status: the engine's trouble, not the
// container's), E_DOCKER_TIMEOUT, E_DOCKER_UNREACHABLE.
import http from 'node:http';
import type { ContainerInfo, ContainerInspectInfo } from 'dockerode';
import { GantryError } from '@gantry/core';

export interface DockerClientOptions {
  /** list and inspect: the whole call (default 10 s) */
  requestTimeoutMs?: number;
  /** the event stream: until the engine answered (default 10 s) */
  connectTimeoutMs?: number;
}

export class DockerClient {
  readonly socketPath: string;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  constructor(socketPath: string, o: DockerClientOptions = {}) {
    this.socketPath = socketPath;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
    this.connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  }

  /** Resolves with the response once its headers arrived, within timeoutMs. */
  private raw(path: string, timeoutMs: number, signal?: AbortSignal): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
    return new Promise((resolve, reject) => {
      const what = `Docker GET ${path.split('?')[0]}`;
      const req = http.request({ socketPath: this.socketPath, path, agent: this.agent, headers: { host: 'docker' }, ...(signal ? { signal } : {}) }, (res) => {
        clearTimeout(timer);
        resolve({ res, req });
      });
      const timer = setTimeout(() => req.destroy(new GantryError('E_DOCKER_TIMEOUT', `${what}: no answer from the Docker engine at ${this.socketPath} within ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof GantryError ? err : new GantryError('E_DOCKER_UNREACHABLE', `Docker engine at ${this.socketPath}: ${err.message}`, { cause: err }));
      });
      req.end();
    });
  }

  private async json<T>(path: string): Promise<T> {
    const t0 = Date.now();
    const { res, req } = await this.raw(path, this.requestTimeoutMs);
    // the body within what is left of the timeout
    const timer = setTimeout(() => req.destroy(new GantryError('E_DOCKER_TIMEOUT', `Docker GET ${path.split('?')[0]}: body not read within ${this.requestTimeoutMs} ms`)), Math.max(1, this.requestTimeoutMs - (Date.now() - t0)));
    const chunks: Buffer[] = [];
    try {
      for await (const c of res) chunks.push(c as Buffer);
    } catch (err) {
      throw err instanceof GantryError ? err : new GantryError('E_DOCKER_UNREACHABLE', `Docker GET ${path.split('?')[0]}: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    if (res.errored) throw res.errored instanceof GantryError ? res.errored : new GantryError('E_DOCKER_UNREACHABLE', `Docker GET ${path.split('?')[0]}: ${res.errored.message}`);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    if (status >= 300) {
      throw new GantryError(status === 404 ? 'E_DOCKER_NOT_FOUND' : 'E_DOCKER_HTTP', `Docker GET ${path.split('?')[0]}: ${status} ${text.slice(0, 200).trim()}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new GantryError('E_DOCKER_HTTP', `Docker GET ${path.split('?')[0]}: the answer is not JSON (${(err as Error).message})`);
    }
  }

  /** The engine's version (GET /version): what `gantry doctor` prints. */
  version(): Promise<{ Version?: string; ApiVersion?: string; Os?: string }> {
    return this.json('/version');
  }

  list(all: boolean): Promise<ContainerInfo[]> {
    return this.json(`/containers/json?all=${all ? 1 : 0}`);
  }

  inspect(id: string): Promise<ContainerInspectInfo> {
    return this.json(`/containers/${encodeURIComponent(id)}/json`);
  }

  /** The event stream (newline-separated JSON), open until the engine closes it or the signal aborts. */
  async events(filters: Record<string, string[]>, signal: AbortSignal): Promise<http.IncomingMessage> {
    const { res } = await this.raw(`/events?filters=${encodeURIComponent(JSON.stringify(filters))}`, this.connectTimeoutMs, signal);
    if ((res.statusCode ?? 0) >= 300) {
      res.resume();
      throw new GantryError('E_DOCKER_HTTP', `Docker GET /events: ${res.statusCode}`);
    }
    return res;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** true when the error says the container no longer exists (404), not that the engine failed */
export function isGone(err: unknown): boolean {
  return err instanceof GantryError && err.code === 'E_DOCKER_NOT_FOUND';
}
