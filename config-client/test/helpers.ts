// Test helpers: a Consul KV writer over plain HTTP, waiting for an event with
// a deadline (a failure message, not a timing assertion), and captured logs.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@gantry/core';
import type { ConfigClient, ClientEvents } from '../src/index.ts';

export interface Kv {
  put(key: string, value: string | Buffer): Promise<void>;
  del(key: string, recurse?: boolean): Promise<void>;
  /** several sets and deletes in one Consul transaction (one index) */
  txn(ops: Array<{ set: string; value: string } | { del: string }>): Promise<void>;
  /** the raw value, or undefined */
  raw(key: string): Promise<string | undefined>;
}

export function kvPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export function kvClient(addr: () => string, token?: string): Kv {
  const headers = (): Record<string, string> => (token ? { 'x-consul-token': token } : {});
  const call = async (method: string, path: string, body?: string | Buffer): Promise<Response> => {
    const res = await fetch(`${addr()}${path}`, { method, body, headers: headers(), signal: AbortSignal.timeout(60_000) });
    if (!res.ok && res.status !== 404) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res;
  };
  return {
    async put(key, value) {
      const res = await call('PUT', `/v1/kv/${kvPath(key)}`, value);
      if ((await res.text()).trim() !== 'true') throw new Error(`PUT ${key} was not applied`);
    },
    async del(key, recurse = false) {
      await (await call('DELETE', `/v1/kv/${kvPath(key)}${recurse ? '?recurse' : ''}`)).text();
    },
    async txn(ops) {
      for (let i = 0; i < ops.length; i += 64) {
        const chunk = ops.slice(i, i + 64).map((op) => ('set' in op
          ? { KV: { Verb: 'set', Key: op.set, Value: Buffer.from(op.value).toString('base64') } }
          : { KV: { Verb: 'delete', Key: op.del } }));
        await (await call('PUT', '/v1/txn', JSON.stringify(chunk))).text();
      }
    },
    async raw(key) {
      const res = await call('GET', `/v1/kv/${kvPath(key)}?raw`);
      return res.status === 404 ? undefined : res.text();
    },
  };
}

/** The next event of a kind that matches, or a failure after the deadline. */
export function nextEvent<K extends keyof ClientEvents>(
  config: ConfigClient,
  event: K,
  match: (payload: ClientEvents[K]) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<ClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no matching '${String(event)}' event within ${timeoutMs} ms`)); }, timeoutMs);
    const off = config.on(event, (p) => {
      if (!match(p)) return;
      clearTimeout(timer);
      off();
      resolve(p);
    });
  });
}

/** Polls until fn() is truthy; fails with `what` after the deadline. */
export async function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface CapturedLogs {
  logger: Logger;
  lines(): Array<Record<string, unknown>>;
  text(): string;
}

export function captureLogs(level = 'debug'): CapturedLogs {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb(); },
  });
  const logger = createLogger({ component: 'config-client', level, destination });
  return {
    logger,
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
