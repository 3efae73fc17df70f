// The shapes the config client hands out: values, change events, options.
import type { ConsulClient, ConsulConfig, Logger } from '@gantry/core';

/** A value in the view: a plain KV value is a string; a parsed document adds numbers, booleans, null and lists. */
export type ConfigValue = string | number | boolean | null | ConfigValue[] | { [key: string]: ConfigValue };

/** A nested object as `tree()` returns it. */
export interface ConfigTree { [segment: string]: ConfigValue | ConfigTree }

export type ChangeType = 'added' | 'modified' | 'deleted';

export interface ChangeEvent {
  /** the key in the view (relative to its prefix, '/'-separated) */
  key: string;
  oldValue: ConfigValue | undefined;
  newValue: ConfigValue | undefined;
  type: ChangeType;
}

/** Where the view in memory came from. */
export type Source = 'consul' | 'snapshot' | 'none';

/** How the keys of one prefix are read: see documents.ts and the README. */
export type PrefixFormat = 'auto' | 'plain' | 'yaml' | 'json' | 'properties';
export type DocumentFormat = 'yaml' | 'json' | 'properties';

export interface PrefixSpec {
  /** a Consul KV folder, e.g. `config/application/`; a trailing '/' is added when missing */
  prefix: string;
  /** `auto` (default): keys ending in .yaml/.yml/.json/.properties are documents; `plain`: none are; a format: every key is one */
  format?: PrefixFormat;
}

export type Consistency = 'default' | 'stale' | 'consistent';

export interface ConfigClientOptions {
  /** least specific first: a key in a later prefix wins over the same key in an earlier one */
  prefixes: ReadonlyArray<string | PrefixSpec>;
  /** a Consul config (address, token, TLS) or a client made with core's createConsul; default: Consul's environment variables */
  consul?: ConsulConfig | ConsulClient;
  /** Consul's read consistency mode (default: `default`) */
  consistency?: Consistency;
  /** blocking-query wait, a Go duration (default `5m`, at most `10m`) */
  wait?: string;
  /** answer time for a plain request, and the margin added to `wait` for a blocking one (default `10s`) */
  timeout?: string;
  /** file for the local snapshot (written mode 0600 after each change); false or absent: none */
  snapshot?: string | false;
  /** true (default): start() rejects when neither Consul nor a snapshot gave a view in time; false: it starts empty (`source` 'none') and keeps trying */
  failFast?: boolean;
  /** how long start() tries before giving up (default `10s`); a Go duration or milliseconds */
  startTimeout?: string | number;
  /** backoff with full jitter between failed requests (default 200 ms doubling up to 10 s) */
  retry?: { baseMs?: number; maxMs?: number };
  /** blocking queries per prefix when values churn: a token bucket (default 20 a second, burst 20) */
  rateLimit?: { perSecond?: number; burst?: number };
  /** a pino logger (default: core's createLogger, component `config-client`) */
  logger?: Logger;
}

/** A document key whose value did not parse; the previous parsed value stays in the view. */
export interface InvalidDocument {
  /** the full Consul key */
  key: string;
  format: DocumentFormat;
  /** the parser's message */
  message: string;
}

/** Something went wrong that the client recovers from by itself (Consul unreachable, snapshot not written ...). */
export interface Warning {
  code: string;
  message: string;
  prefix?: string;
  key?: string;
}

export interface ClientEvents {
  change: ChangeEvent;
  /** every change of one applied result, after the whole new view is in place */
  changes: readonly ChangeEvent[];
  invalid: InvalidDocument;
  source: { source: Source; previous: Source };
  snapshot: { path: string };
  warning: Warning;
}
