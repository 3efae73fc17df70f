// The Consul client factory: address, ACL token (or token file), TLS and
// datacenter in one place, read from flags or Consul's own environment variables.
// `api` is the `consul` package for ordinary calls; `request` is a small raw
// HTTP call for blocking queries (it exposes X-Consul-Index and takes an AbortSignal).
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type Consul from 'consul';
import { GantryError, errorMessage } from './errors.ts';
import { redactUrl } from './logger.ts';

export interface ConsulConfig {
  /** http://host:port, https://host:port or host:port (as CONSUL_HTTP_ADDR) */
  addr: string;
  token?: string | undefined;
  tokenFile?: string | undefined;
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  datacenter?: string | undefined;
  /** connections at once to the agent (default 64); 1: every request goes over one connection */
  maxSockets?: number | undefined;
}

/** Consul's own environment variables, as the consul CLI reads them. */
export function consulConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ConsulConfig {
  return {
    addr: env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500',
    token: env.CONSUL_HTTP_TOKEN || undefined,
    tokenFile: env.CONSUL_HTTP_TOKEN_FILE || undefined,
    caFile: env.CONSUL_CACERT || undefined,
    certFile: env.CONSUL_CLIENT_CERT || undefined,
    keyFile: env.CONSUL_CLIENT_KEY || undefined,
    datacenter: env.CONSUL_DATACENTER || undefined,
  };
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** blocking query: the last X-Consul-Index seen */
  index?: string | undefined;
  /** blocking query: max wait, Go duration string */
  wait?: string | undefined;
  signal?: AbortSignal | undefined;
  /** whole request timeout in ms (a blocking query needs wait + margin) */
  timeoutMs?: number | undefined;
}

export interface ConsulResponse<T> {
  status: number;
  body: T;
  /** X-Consul-Index, when Consul sent it */
  index: string | undefined;
  knownLeader: boolean | undefined;
  headers: http.IncomingHttpHeaders;
}

export interface ConsulClient {
  readonly api: Consul;
  readonly baseUrl: string;
  readonly datacenter: string | undefined;
  /** raw HTTP call; 404 resolves (status 404), other non-2xx rejects with E_CONSUL_HTTP */
  request<T>(method: string, path: string, opts?: RequestOptions): Promise<ConsulResponse<T>>;
  /**
   * a client of the same configuration whose requests share one kept-alive
   * connection: behind a load balancer or a DNS name with several agents, they
   * all reach the same agent (for agent-local state: checks, sessions). Close it too.
   */
  pinned?(): ConsulClient;
  close(): void;
}

function normalizeAddr(addr: string): URL {
  const withScheme = /^[a-z]+:\/\//i.test(addr) ? addr : `http://${addr}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new GantryError('E_CONFIG', `invalid Consul address ${JSON.stringify(redactUrl(withScheme))}: expected http(s)://host:port`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new GantryError('E_CONFIG', `invalid Consul address ${JSON.stringify(redactUrl(addr))}: scheme must be http or https`);
  }
  return url;
}

function readSecretFile(what: string, file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    // the path is not a secret; its contents would be
    throw new GantryError('E_CONFIG', `cannot read ${what} ${file}: ${errorMessage(err)}`);
  }
}

export function createConsul(cfg: ConsulConfig): ConsulClient {
  const url = normalizeAddr(cfg.addr);
  const token = cfg.token ?? (cfg.tokenFile ? readSecretFile('Consul token file', cfg.tokenFile) : undefined);
  const secure = url.protocol === 'https:' || Boolean(cfg.caFile || cfg.certFile);
  const tls = {
    ca: cfg.caFile ? readFileSync(cfg.caFile) : undefined,
    cert: cfg.certFile ? readFileSync(cfg.certFile) : undefined,
    key: cfg.keyFile ? readFileSync(cfg.keyFile) : undefined,
  };
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: cfg.maxSockets ?? 64, ...tls })
    : new http.Agent({ keepAlive: true, maxSockets: cfg.maxSockets ?? 64 });
  const port = Number(url.port || (secure ? 443 : 80));
  const baseUrl = `${secure ? 'https' : 'http'}://${url.hostname}:${port}`;
  // the `consul` package is loaded on first use only: most parts need just `request`
  let api: Consul | undefined;
  const makeApi = (): Consul => {
    const ConsulClass = createRequire(import.meta.url)('consul') as typeof Consul;
    return new ConsulClass({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port,
      secure,
      agent,
      defaults: { ...(token ? { token } : {}), ...(cfg.datacenter ? { dc: cfg.datacenter } : {}) },
    });
  };

  const request = <T>(method: string, path: string, opts: RequestOptions = {}): Promise<ConsulResponse<T>> => {
    const target = new URL(path, baseUrl);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) target.searchParams.set(k, String(v));
    if (cfg.datacenter && !target.searchParams.has('dc')) target.searchParams.set('dc', cfg.datacenter);
    if (opts.index !== undefined) target.searchParams.set('index', opts.index);
    if (opts.wait !== undefined) target.searchParams.set('wait', opts.wait);
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers['x-consul-token'] = token;
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
    const mod = secure ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(target, { method, agent, headers, signal: opts.signal, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          const index = res.headers['x-consul-index'];
          const kl = res.headers['x-consul-knownleader'];
          if (status >= 300 && status !== 404) {
            reject(new GantryError('E_CONSUL_HTTP', `Consul ${method} ${target.pathname}: ${status} ${text.slice(0, 300).trim()}`));
            return;
          }
          let body: unknown = text;
          if (text && (res.headers['content-type'] ?? '').includes('json')) {
            try { body = JSON.parse(text); } catch (err) { reject(new GantryError('E_CONSUL_HTTP', `Consul ${method} ${target.pathname}: bad JSON: ${errorMessage(err)}`)); return; }
          }
          resolve({
            status,
            body: body as T,
            index: typeof index === 'string' ? index : undefined,
            knownLeader: typeof kl === 'string' ? kl === 'true' : undefined,
            headers: res.headers,
          });
        });
      });
      req.on('timeout', () => req.destroy(new GantryError('E_CONSUL_TIMEOUT', `Consul ${method} ${target.pathname}: no answer in ${opts.timeoutMs ?? 10_000} ms`)));
      req.on('error', (err) => reject(err instanceof GantryError || (err as { name?: string }).name === 'AbortError' ? err : new GantryError('E_CONSUL_UNREACHABLE', `Consul ${method} ${target.pathname} at ${baseUrl}: ${errorMessage(err)}`, { cause: err })));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  };

  return {
    get api() {
      api ??= makeApi();
      return api;
    },
    baseUrl,
    datacenter: cfg.datacenter,
    request,
    pinned: () => createConsul({ ...cfg, maxSockets: 1 }),
    close() {
      agent.destroy();
    },
  };
}

/**
 * Consul's blocking-query index rules (docs: "Blocking Queries"): when the
 * returned index goes backwards, start again from 0; an index of 0 is never
 * used as-is (treat as 1), so the next query blocks instead of spinning.
 */
export function nextIndex(previous: string | undefined, returned: string | undefined): string {
  const prev = previous === undefined ? 0n : BigInt(previous);
  let got: bigint;
  try {
    got = returned === undefined ? 0n : BigInt(returned);
  } catch {
    got = 0n;
  }
  if (got < prev) return '0';
  if (got <= 0n) return '1';
  return got.toString();
}
