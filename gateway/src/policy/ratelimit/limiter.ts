// Rate-limit decisions shared by every gateway replica through Redis: one atomic
// Lua script a decision (INCR of the key's current window, Redis's own clock).
// When Redis is unreachable (not connected, or a decision errs or times out) the
// configured fallback decides: `local` (each replica counts alone), `open` (allow)
// or `closed` (refuse). Every switch between Redis and the fallback is logged and
// counted; Redis takes over again as soon as it answers.
import { Redis } from 'ioredis';
import { errorMessage, redactUrl, type Logger } from '@gantry/core';
import { LocalWindows, type RateDecision } from './window.ts';

const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local slot = math.floor(now / win)
local key = KEYS[1] .. ':' .. slot
local n = redis.call('INCR', key)
if n == 1 then redis.call('PEXPIRE', key, win * 2) end
local reset = (slot + 1) * win - now
if n > limit then return {0, 0, reset} end
return {1, limit - n, reset}
`;

export type Fallback = 'local' | 'open' | 'closed';

export interface LimiterOptions {
  /** undefined: local only */
  redisUrl: string | undefined;
  keyPrefix: string;
  fallback: Fallback;
  /** a decision waits this long for Redis before the fallback decides */
  timeoutMs: number;
  log: Logger;
  onDecision?: (backend: RateDecision['backend'], allowed: boolean) => void;
  onSwitch?: (to: 'redis' | Fallback) => void;
}

interface RateRedis extends Redis {
  gantryRate(key: string, windowMs: number, limit: number): Promise<[number, number, number]>;
}

export class RateLimiter {
  private readonly redis: RateRedis | undefined;
  private readonly local = new LocalWindows();
  /** where decisions are made now */
  private using: 'redis' | Fallback;

  private readonly o: LimiterOptions;

  constructor(o: LimiterOptions) {
    this.o = o;
    this.using = o.redisUrl ? 'redis' : 'local';
    if (!o.redisUrl) return;
    const r = new Redis(o.redisUrl, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      retryStrategy: (times) => Math.min(1000, 50 * 2 ** Math.min(times, 5)),
    }) as RateRedis;
    r.defineCommand('gantryRate', { numberOfKeys: 1, lua: SCRIPT });
    r.on('error', (err) => o.log.debug({ err: errorMessage(err), redis: redactUrl(o.redisUrl!) }, 'rate-limit redis error'));
    r.on('ready', () => this.switchTo('redis', 'redis connected'));
    r.on('close', () => this.switchTo(o.fallback, 'redis connection lost'));
    this.redis = r;
  }

  get backend(): 'redis' | Fallback { return this.using; }

  get redisConfigured(): boolean { return this.redis !== undefined; }

  private switchTo(to: 'redis' | Fallback, why: string): void {
    if (this.using === to) return;
    const from = this.using;
    this.using = to;
    this.o.onSwitch?.(to);
    const fields = { from, to, redis: redactUrl(this.o.redisUrl ?? ''), why };
    if (to === 'redis') this.o.log.info(fields, 'rate limits shared through Redis again');
    else this.o.log.warn(fields, `Redis unreachable: rate limits decided by the ${to} fallback`);
  }

  private fallback(key: string, limit: number, windowMs: number): RateDecision {
    switch (this.o.fallback) {
      case 'open': return { allowed: true, limit, remaining: limit, resetMs: windowMs, backend: 'open' };
      case 'closed': return { allowed: false, limit, remaining: 0, resetMs: windowMs, backend: 'closed' };
      default: return this.local.decide(key, limit, windowMs, Date.now());
    }
  }

  async decide(key: string, limit: number, windowMs: number): Promise<RateDecision> {
    let d: RateDecision;
    if (this.redis && this.redis.status === 'ready') {
      try {
        const [ok, remaining, reset] = await withTimeout(this.redis.gantryRate(`${this.o.keyPrefix}${key}`, windowMs, limit), this.o.timeoutMs);
        d = { allowed: ok === 1, limit, remaining, resetMs: reset, backend: 'redis' };
        if (this.using !== 'redis') this.switchTo('redis', 'redis answered');
      } catch (err) {
        this.switchTo(this.o.fallback, `decision failed: ${errorMessage(err)}`);
        d = this.fallback(key, limit, windowMs);
      }
    } else if (!this.redis) {
      d = this.local.decide(key, limit, windowMs, Date.now());
    } else {
      if (this.redis) this.switchTo(this.o.fallback, `redis ${this.redis.status}`);
      d = this.fallback(key, limit, windowMs);
    }
    this.o.onDecision?.(d.backend, d.allowed);
    return d;
  }

  close(): void { this.redis?.disconnect(); }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms); }),
  ]);
}
