// Command-line flags with environment-variable twins. Every flag is declared once
// (name, type, env, default, description); --help is made from the declarations,
// and a bad flag or value throws UsageError naming it (the CLI exits 2).
import { UsageError, errorMessage } from './errors.ts';
import { redactUrl } from './logger.ts';
import { parseRedisUrl } from './redis-url.ts';
import { parseDuration } from './duration.ts';
import type { ConsulConfig } from './consul.ts';

export type FlagType = 'string' | 'boolean' | 'int' | 'duration' | 'url' | 'enum' | 'list' | 'addr';
type FlagValue = string | boolean | number | string[] | undefined;

export interface FlagSpec {
  name: string;
  type: FlagType;
  description: string;
  /** environment variable twin; default GANTRY_<NAME> */
  env?: string;
  default?: string | boolean | number | string[];
  choices?: readonly string[];
  /** never echoed in errors or help defaults */
  secret?: boolean;
  /** url: allowed schemes (default http, https) */
  schemes?: readonly string[];
  /** int: lower and upper bound */
  min?: number;
  max?: number;
}

export const envName = (spec: FlagSpec): string => spec.env ?? `GANTRY_${spec.name.toUpperCase().replace(/-/g, '_')}`;

/** A value as errors may echo it: secrets never; a URL without its user and password. */
function shown(spec: FlagSpec, value: string): string {
  if (spec.secret) return '(hidden)';
  if (spec.type === 'url' && value.includes('@')) {
    // a URL too broken to parse may still hold a password somewhere: show none of it
    return URL.canParse(value) ? JSON.stringify(redactUrl(value)) : '(hidden: it may hold a password)';
  }
  return JSON.stringify(value);
}

function convert(spec: FlagSpec, raw: string, where: string): FlagValue {
  const bad = (why: string): never => { throw new UsageError(`${where}: invalid value ${shown(spec, raw)}: ${why}`); };
  switch (spec.type) {
    case 'string':
      return raw;
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      return bad('expected true or false');
    case 'int': {
      if (!/^-?\d+$/.test(raw)) return bad('expected a whole number');
      const n = Number(raw);
      if (spec.min !== undefined && n < spec.min) return bad(`must be at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return bad(`must be at most ${spec.max}`);
      return n;
    }
    case 'duration':
      try {
        return parseDuration(raw);
      } catch {
        return bad('expected a duration such as 500ms, 5s or 1m');
      }
    case 'url': {
      if (raw.startsWith('redis+sentinel://') && spec.schemes?.includes('redis+sentinel')) {
        try { parseRedisUrl(raw); } catch (err) { return bad(errorMessage(err).replace(/^invalid Redis URL "[^"]*": /, '')); }
        return raw;
      }
      let u: URL;
      try { u = new URL(raw); } catch { return bad('expected a URL such as http://127.0.0.1:8500'); }
      const schemes = spec.schemes ?? ['http', 'https'];
      if (!schemes.includes(u.protocol.replace(/:$/, ''))) return bad(`scheme must be one of ${schemes.join(', ')}`);
      return raw;
    }
    case 'addr': {
      const m = /^(?:\[[0-9a-fA-F:.]+\]|[^:\s]*):(\d{1,5})$/.exec(raw);
      if (!m || Number(m[1]) > 65535) return bad('expected host:port, e.g. 127.0.0.1:9100');
      return raw;
    }
    case 'enum':
      if (!spec.choices?.includes(raw)) return bad(`expected one of ${spec.choices?.join(', ')}`);
      return raw;
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
  }
}

export class Flags {
  private readonly values: Map<string, FlagValue>;
  readonly positionals: string[];
  readonly help: boolean;
  constructor(values: Map<string, FlagValue>, positionals: string[], help: boolean) {
    this.values = values;
    this.positionals = positionals;
    this.help = help;
  }
  private get(name: string): FlagValue {
    if (!this.values.has(name)) throw new Error(`flag --${name} was not declared`);
    return this.values.get(name);
  }
  str(name: string): string {
    const v = this.get(name);
    if (typeof v !== 'string') throw new UsageError(`--${name} is required`);
    return v;
  }
  optStr(name: string): string | undefined {
    const v = this.get(name);
    return typeof v === 'string' && v !== '' ? v : undefined;
  }
  bool(name: string): boolean {
    return this.get(name) === true;
  }
  int(name: string): number {
    const v = this.get(name);
    if (typeof v !== 'number') throw new UsageError(`--${name} is required`);
    return v;
  }
  /** a duration flag, in milliseconds */
  ms(name: string): number {
    return this.int(name);
  }
  list(name: string): string[] {
    const v = this.get(name);
    return Array.isArray(v) ? v : [];
  }
}

/** Parses argv (after the subcommand) and the environment against the declared flags. */
export function parseFlags(specs: readonly FlagSpec[], argv: readonly string[], env: NodeJS.ProcessEnv = process.env, command = 'gantry'): Flags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, FlagValue>();
  const set = new Set<string>();
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (arg === '-h' || arg === '--help') { help = true; continue; }
    if (!arg.startsWith('-') || arg === '-') { positionals.push(arg); continue; }
    const m = /^--?([^=]+)(?:=(.*))?$/s.exec(arg);
    let name = m?.[1] ?? arg;
    let inline = m?.[2];
    let spec = byName.get(name);
    if (!spec && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean' && inline === undefined) {
      name = name.slice(3);
      spec = byName.get(name);
      inline = 'false';
    }
    if (!spec) throw new UsageError(`unknown flag ${JSON.stringify(arg.split('=')[0])} (see ${command} --help)`);
    let raw: string;
    if (inline !== undefined) raw = inline;
    else if (spec.type === 'boolean') raw = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`flag --${name} needs a value`);
      raw = next;
      i++;
    }
    const v = convert(spec, raw, `flag --${name}`);
    if (spec.type === 'list' && set.has(name)) values.set(name, [...(values.get(name) as string[]), ...(v as string[])]);
    else values.set(name, v);
    set.add(name);
  }
  for (const spec of specs) {
    if (set.has(spec.name)) continue;
    const e = env[envName(spec)];
    if (e !== undefined && e !== '') values.set(spec.name, convert(spec, e, `environment variable ${envName(spec)} (flag --${spec.name})`));
    else values.set(spec.name, spec.type === 'duration' && typeof spec.default === 'string' ? parseDuration(spec.default) : spec.default);
  }
  return new Flags(values, positionals, help);
}

/** The --help text: one block a flag, with its type, env twin and default. */
export function helpText(command: string, summary: string, specs: readonly FlagSpec[]): string {
  const lines = [`Usage: ${command} [flags]`, '', summary, '', 'Flags (each also read from the environment variable shown):'];
  for (const s of specs) {
    const type = s.type === 'boolean' ? '' : s.type === 'enum' ? ` <${s.choices?.join('|')}>` : ` <${s.type}>`;
    const def = s.default === undefined || s.secret ? '' : ` (default: ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)})`;
    lines.push(`  --${s.name}${type}`, `      ${s.description}${def}`, `      env: ${envName(s)}`);
  }
  lines.push('  -h, --help', '      show this help');
  return `${lines.join('\n')}\n`;
}

/** Consul connection flags, with Consul's own environment variables as twins. */
export const consulFlags: readonly FlagSpec[] = [
  { name: 'consul-addr', type: 'url', env: 'CONSUL_HTTP_ADDR', default: 'http://127.0.0.1:8500', description: 'Consul HTTP API address' },
  { name: 'consul-token', type: 'string', env: 'CONSUL_HTTP_TOKEN', secret: true, description: 'Consul ACL token (never logged)' },
  { name: 'consul-token-file', type: 'string', env: 'CONSUL_HTTP_TOKEN_FILE', description: 'file holding the Consul ACL token' },
  { name: 'consul-cacert', type: 'string', env: 'CONSUL_CACERT', description: 'CA certificate to verify Consul over TLS' },
  { name: 'consul-client-cert', type: 'string', env: 'CONSUL_CLIENT_CERT', description: 'client certificate for Consul mTLS' },
  { name: 'consul-client-key', type: 'string', env: 'CONSUL_CLIENT_KEY', description: 'client key for Consul mTLS' },
  { name: 'consul-datacenter', type: 'string', env: 'CONSUL_DATACENTER', description: 'Consul datacenter (default: the agent\'s)' },
];

/** Logging and the admin endpoint, shared by every long-running part. */
export const commonFlags: readonly FlagSpec[] = [
  { name: 'log-level', type: 'enum', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info', description: 'log level' },
];

export function consulConfigFromFlags(f: Flags): ConsulConfig {
  return {
    addr: f.str('consul-addr'),
    token: f.optStr('consul-token'),
    tokenFile: f.optStr('consul-token-file'),
    caFile: f.optStr('consul-cacert'),
    certFile: f.optStr('consul-client-cert'),
    keyFile: f.optStr('consul-client-key'),
    datacenter: f.optStr('consul-datacenter'),
  };
}
