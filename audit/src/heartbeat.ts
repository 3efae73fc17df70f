// A writer's heartbeat in Consul: a KV key under gantry/writers/<owner>/<instance>
// held by a TTL session. While the writer lives it renews the session and
// rewrites the value (owner, source, version, start time, last full pass,
// counts); when it dies the session lapses, Consul releases the key and the
// value stays behind as its last word — the drift report calls the owner gone.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { errorMessage, Backoff, sleep, type ConsulClient, type Logger } from '@gantry/core';

export const WRITERS_PREFIX = 'gantry/writers';

export interface PassSummary { reason: string; full: boolean; planned: number; failed: number; ms: number; held?: number }

/** The value of a heartbeat key (JSON). */
export interface HeartbeatValue {
  owner: string;
  instance: string;
  /** docker | kubernetes | zookeeper | static | … */
  source: string;
  version: string;
  host: string;
  pid: number;
  startedAt: string;
  /** last time the value was written; the writer is gone by heartbeatAt + 2·ttl at the latest */
  heartbeatAt: string;
  ttlMs: number;
  lastFullPass: { at: string; ms: number; reason: string; planned: number; failed: number } | null;
  counts: { held: number; passes: number; register: number; update: number; status: number; deregister: number; errors: number };
  /** set when the writer stopped on purpose */
  stoppedAt?: string;
}

export interface HeartbeatOptions {
  consul: ConsulClient;
  owner: string;
  source: string;
  /** session TTL (Consul's minimum is session_ttl_min, 10 s by default) */
  ttlMs: number;
  log: Logger;
  prefix?: string;
}

let cachedVersion: string | undefined;
/** Gantry's version (the repository's package.json). */
export function gantryVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

/** KV path segment: an owner id may hold any character but stays one URL-safe segment (~hex~ escapes) */
export const keySegment = (s: string): string => s.replace(/[^A-Za-z0-9._@=-]/g, (ch) => `~${ch.codePointAt(0)!.toString(16)}~`);

export class Heartbeat {
  private readonly o: HeartbeatOptions;
  readonly instance = `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;
  private readonly value: HeartbeatValue;
  private session: string | undefined;
  private readonly prefix: string;

  constructor(o: HeartbeatOptions) {
    this.o = o;
    this.prefix = o.prefix ?? WRITERS_PREFIX;
    this.value = {
      owner: o.owner, instance: this.instance, source: o.source, version: gantryVersion(), host: hostname(), pid: process.pid,
      startedAt: new Date().toISOString(), heartbeatAt: new Date().toISOString(), ttlMs: o.ttlMs, lastFullPass: null,
      counts: { held: 0, passes: 0, register: 0, update: 0, status: 0, deregister: 0, errors: 0 },
    };
  }

  get key(): string {
    return `${this.prefix}/${keySegment(this.o.owner)}/${keySegment(this.instance)}`;
  }

  /** A reconciliation pass finished. */
  pass(p: PassSummary): void {
    this.value.counts.passes++;
    if (p.held !== undefined) this.value.counts.held = p.held;
    if (p.full && p.failed === 0) this.value.lastFullPass = { at: new Date().toISOString(), ms: Math.round(p.ms), reason: p.reason, planned: p.planned, failed: p.failed };
  }

  /** A change was applied (or failed). */
  applied(action: string, ok: boolean): void {
    if (!ok) this.value.counts.errors++;
    else if (action in this.value.counts) this.value.counts[action as 'register' | 'update' | 'status' | 'deregister']++;
  }

  /** Runs until aborted: holds the key, renews every ttl/3; on abort marks the value stopped and lets go. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ baseMs: 500, maxMs: 10_000 });
    let cleaned = false;
    while (!signal.aborted) {
      try {
        if (!cleaned) { await this.removePredecessors(); cleaned = true; }
        await this.beat(signal);
        backoff.reset();
        await sleep(Math.max(300, Math.floor(this.o.ttlMs / 3)), signal).catch(() => undefined);
      } catch (err) {
        if (signal.aborted) break;
        const delay = backoff.next();
        this.o.log.warn({ key: this.key, err: errorMessage(err), retryInMs: delay }, 'heartbeat: Consul call failed');
        await sleep(delay, signal).catch(() => undefined);
      }
    }
    await this.stop();
  }

  private async beat(signal: AbortSignal): Promise<void> {
    const c = this.o.consul;
    if (this.session) {
      const renewed = await c.request<unknown>('PUT', `/v1/session/renew/${this.session}`, { signal });
      if (renewed.status === 404) {
        this.o.log.warn({ key: this.key }, 'heartbeat session was invalidated; making a new one');
        this.session = undefined;
      }
    }
    if (!this.session) {
      const created = await c.request<{ ID: string }>('PUT', '/v1/session/create', {
        body: { Name: `gantry writer ${this.o.owner}`, TTL: `${Math.max(1, Math.round(this.o.ttlMs / 1000))}s`, Behavior: 'release', LockDelay: '0s' },
        signal,
      });
      this.session = created.body.ID;
    }
    this.value.heartbeatAt = new Date().toISOString();
    const ok = await c.request<boolean>('PUT', `/v1/kv/${this.key}`, { query: { acquire: this.session }, body: JSON.stringify(this.value), signal });
    if (ok.body !== true) throw new Error(`could not hold ${this.key}`);
  }

  /** Keys of earlier instances of this owner that no session holds: replaced by this one. */
  private async removePredecessors(): Promise<void> {
    const c = this.o.consul;
    const res = await c.request<Array<{ Key: string; Session?: string }> | null>('GET', `/v1/kv/${this.prefix}/${keySegment(this.o.owner)}/`, { query: { recurse: true } });
    for (const k of res.status === 404 ? [] : res.body ?? []) {
      if (k.Session || k.Key === this.key) continue;
      await c.request('DELETE', `/v1/kv/${k.Key}`);
      this.o.log.info({ owner: this.o.owner, key: k.Key }, 'heartbeat of a previous instance removed');
    }
  }

  private async stop(): Promise<void> {
    const c = this.o.consul;
    if (!this.session) return;
    this.value.stoppedAt = new Date().toISOString();
    await c.request('PUT', `/v1/kv/${this.key}`, { query: { release: this.session }, body: JSON.stringify(this.value), timeoutMs: 2000 }).catch(() => undefined);
    await c.request('PUT', `/v1/session/destroy/${this.session}`, { timeoutMs: 2000 }).catch(() => undefined);
    this.session = undefined;
  }
}
