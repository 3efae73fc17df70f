// The three Docker Engine API calls the registrator needs (list, inspect, the
// event stream), over the unix socket with node:http. Measured in
// bench/registrator.ts: dockerode (with docker-modem and ssh2) cost the
// registrator ~30 MB of RSS for these three calls.
import http from 'node:http';
import type { ContainerInfo, ContainerInspectInfo } from 'dockerode';
import { GantryError } from '@gantry/core';

export class DockerClient {
  readonly socketPath: string;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  private raw(path: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, path, agent: this.agent, headers: { host: 'docker' }, ...(signal ? { signal } : {}) }, resolve);
      req.on('error', (err) => reject(new GantryError('E_DOCKER_UNREACHABLE', `Docker engine at ${this.socketPath}: ${err.message}`, { cause: err })));
      req.end();
    });
  }

  private async json<T>(path: string): Promise<T> {
    const res = await this.raw(path);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if ((res.statusCode ?? 0) >= 300) throw new GantryError('E_DOCKER_HTTP', `Docker GET ${path.split('?')[0]}: ${res.statusCode} ${text.slice(0, 200).trim()}`);
    return JSON.parse(text) as T;
  }

  list(all: boolean): Promise<ContainerInfo[]> {
    return this.json(`/containers/json?all=${all ? 1 : 0}`);
  }

  inspect(id: string): Promise<ContainerInspectInfo> {
    return this.json(`/containers/${encodeURIComponent(id)}/json`);
  }

  /** The event stream (newline-separated JSON), open until the engine closes it or the signal aborts. */
  async events(filters: Record<string, string[]>, signal: AbortSignal): Promise<http.IncomingMessage> {
    const res = await this.raw(`/events?filters=${encodeURIComponent(JSON.stringify(filters))}`, signal);
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
