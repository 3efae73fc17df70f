// start()'s options, checked and with their defaults filled in. A bad option
// is an E_CONFIG error that names it.
import { GantryError, parseDuration } from '@gantry/core';
import type { ConfigClientOptions, Consistency, PrefixFormat, PrefixSpec } from './types.ts';

export interface Settings {
  prefixes: Array<{ prefix: string; format: PrefixFormat }>;
  consistency: Consistency;
  waitMs: number;
  timeoutMs: number;
  snapshot: string | undefined;
  failFast: boolean;
  startTimeoutMs: number;
  backoff: { baseMs: number; maxMs: number };
  rate: { perSecond: number; burst: number };
}

const FORMATS: readonly PrefixFormat[] = ['auto', 'plain', 'yaml', 'json', 'properties'];
const CONSISTENCY: readonly Consistency[] = ['default', 'stale', 'consistent'];
/** Consul caps a blocking query's wait at 10 minutes */
const MAX_WAIT_MS = 600_000;

function bad(message: string): GantryError {
  return new GantryError('E_CONFIG', `config-client: ${message}`);
}

function duration(name: string, value: string | number | undefined, fallback: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw bad(`${name} must be a number of milliseconds ≥ 0, got ${value}`);
    return value;
  }
  try {
    return parseDuration(value ?? fallback);
  } catch (err) {
    throw bad(`${name}: ${(err as Error).message}`);
  }
}

/** `config/app` → `config/app/`; '' (the whole KV store) stays ''. */
export function normalizePrefix(input: string): string {
  const p = input.replace(/^\/+/, '');
  if (p === '') return '';
  const folder = p.endsWith('/') ? p : `${p}/`;
  if (folder.slice(0, -1).split('/').some((s) => s === '.' || s === '..' || s === '')) {
    throw bad(`prefix ${JSON.stringify(input)} has an empty, "." or ".." segment`);
  }
  return folder;
}

function positive(name: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!(n > 0)) throw bad(`${name} must be > 0, got ${n}`);
  return n;
}

export function normalizeOptions(o: ConfigClientOptions): Settings {
  if (typeof o.prefixes !== 'object' || o.prefixes === null || o.prefixes.length === 0) throw bad('prefixes: give at least one Consul KV prefix, e.g. ["config/application/"]');
  const prefixes = o.prefixes.map((p) => {
    const spec: PrefixSpec = typeof p === 'string' ? { prefix: p } : p;
    const format = spec.format ?? 'auto';
    if (!FORMATS.includes(format)) throw bad(`format ${JSON.stringify(format)} of prefix ${JSON.stringify(spec.prefix)}: expected one of ${FORMATS.join(', ')}`);
    return { prefix: normalizePrefix(spec.prefix), format };
  });
  const seen = new Set<string>();
  for (const { prefix } of prefixes) {
    if (seen.has(prefix)) throw bad(`prefix ${JSON.stringify(prefix)} is given twice`);
    seen.add(prefix);
  }
  const consistency = o.consistency ?? 'default';
  if (!CONSISTENCY.includes(consistency)) throw bad(`consistency ${JSON.stringify(consistency)}: expected one of ${CONSISTENCY.join(', ')}`);
  const waitMs = duration('wait', o.wait, '5m');
  if (waitMs < 1 || waitMs > MAX_WAIT_MS) throw bad(`wait ${JSON.stringify(o.wait)} must be between 1ms and 10m (Consul's limit)`);
  const timeoutMs = duration('timeout', o.timeout, '10s');
  if (timeoutMs < 1) throw bad('timeout must be at least 1ms');
  const baseMs = positive('retry.baseMs', o.retry?.baseMs, 200);
  const maxMs = positive('retry.maxMs', o.retry?.maxMs, 10_000);
  return {
    prefixes,
    consistency,
    waitMs,
    timeoutMs,
    snapshot: o.snapshot || undefined,
    failFast: o.failFast ?? true,
    startTimeoutMs: duration('startTimeout', o.startTimeout, '10s'),
    backoff: { baseMs, maxMs: Math.max(baseMs, maxMs) },
    rate: { perSecond: positive('rateLimit.perSecond', o.rateLimit?.perSecond, 20), burst: positive('rateLimit.burst', o.rateLimit?.burst, 20) },
  };
}
