// A unix-socket HTTP proxy in front of the real Docker engine that can inject
// faults: inspect answered with an error status or held back, and the event
// streams cut. Everything else is the real dockerd's answer, byte for byte.
import http from 'node:http';
import { join } from 'node:path';
import { tempDir, removeDir } from '../process.ts';
import { dockerSocket } from './docker.ts';

export interface DockerProxy {
  readonly socket: string;
  /** status to answer GET /containers/<id>/json with instead of dockerd (undefined: forward) */
  inspectStatus: number | undefined;
  /** hold inspect answers back this long (ms) */
  inspectDelayMs: number;
  /** inspect requests received so far, and those being held back now */
  readonly inspects: number;
  readonly inspectsInFlight: number;
  /** closes every open /events stream (the engine seems to have dropped them) */
  cutEvents(): number;
  stop(): Promise<void>;
  tail(): string;
}

const INSPECT = /^\/(?:v[\d.]+\/)?containers\/[^/]+\/json(?:\?|$)/;

export async function startDockerProxy(target = dockerSocket): Promise<DockerProxy> {
  const dir = tempDir('docker-proxy');
  const socket = join(dir, 'docker.sock');
  const streams = new Set<http.ServerResponse>();
  const log: string[] = [];
  let inspects = 0;
  let inFlight = 0;
  const forward = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const up = http.request({ socketPath: target, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      res.flushHeaders(); // as dockerd does: an event stream's headers come before its first event
      ur.pipe(res);
    });
    up.on('error', (err) => { if (!res.headersSent) res.writeHead(502); res.end(String(err)); });
    res.on('close', () => up.destroy());
    req.pipe(up);
  };
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    if (path.includes('/events')) {
      streams.add(res);
      res.on('close', () => streams.delete(res));
      forward(req, res);
      return;
    }
    if (req.method === 'GET' && INSPECT.test(path)) {
      inspects++;
      const status = p.inspectStatus;
      const go = (): void => {
        inFlight--;
        if (status !== undefined) {
          log.push(`inspect ${path} -> injected ${status}`);
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `injected by the test proxy: ${status}` }));
        } else forward(req, res);
      };
      inFlight++;
      if (p.inspectDelayMs > 0) setTimeout(go, p.inspectDelayMs); else go();
      return;
    }
    forward(req, res);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(socket, resolve); });
  const p: DockerProxy = {
    socket,
    inspectStatus: undefined,
    inspectDelayMs: 0,
    get inspects() { return inspects; },
    get inspectsInFlight() { return inFlight; },
    cutEvents() {
      const n = streams.size;
      for (const s of streams) s.destroy();
      log.push(`cut ${n} event stream(s)`);
      return n;
    },
    async stop() {
      for (const s of streams) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      removeDir(dir);
    },
    tail: () => log.slice(-40).join('\n'),
  };
  return p;
}
