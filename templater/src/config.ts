// The templates to render and how each is applied: from a JSON config file
// (--config), from --template source:destination pairs, and from the shortcut
// flags for the shipped templates (--haproxy-cfg, --hosts-file). Anything wrong
// is a UsageError: the command exits 2 saying what and where.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, errorMessage, parseDuration } from '@gantry/core';
import type { CommandSpec } from './apply/exec.ts';

export const templatesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'templates');

/** the templates shipped in templater/templates, by the name `builtin:<name>` */
export const BUILTINS: Record<string, string> = {
  haproxy: join(templatesDir, 'haproxy.cfg.hbs'),
  hosts: join(templatesDir, 'hosts.hbs'),
};

export type ReloadSpec =
  | { master: string }
  | { command: CommandSpec }
  | { signal: string; pidFile: string };

export interface TemplateSpec {
  name: string;
  /** the template file (a builtin resolved to its path) */
  source: string;
  destination: string;
  mode: number;
  backup: boolean;
  allowEmpty: boolean;
  waitMinMs: number;
  waitMaxMs: number;
  check?: CommandSpec | undefined;
  checkTimeoutMs: number;
  reload?: ReloadSpec | undefined;
  /**
   * HAProxy Runtime API for changes of instances (no reload); hostMap: the Host →
   * backend map file the template routes by, kept in step through the Runtime API
   */
  runtime?: { socket: string; stateFile?: string | undefined; hostMap?: string | undefined } | undefined;
  /** values the template reads as settings.* (over the global settings) */
  vars: Record<string, unknown>;
}

/** "min:max" or "min" (max = 4 × min), as consul-template's wait */
export function parseWait(text: string, where = 'wait'): { minMs: number; maxMs: number } {
  const [a, b, ...rest] = text.split(':');
  try {
    if (rest.length || a === undefined || a === '') throw new Error('expected min:max');
    const minMs = parseDuration(a);
    const maxMs = b === undefined ? minMs * 4 : parseDuration(b);
    if (maxMs < minMs) throw new Error('max is shorter than min');
    return { minMs, maxMs };
  } catch (err) {
    throw new UsageError(`${where}: invalid value ${JSON.stringify(text)}: ${errorMessage(err)} (e.g. 50ms:1s)`);
  }
}

function parseMode(v: unknown, where: string): number {
  if (v === undefined) return 0o644;
  const text = typeof v === 'number' ? v.toString(8) : typeof v === 'string' ? v : JSON.stringify(v);
  if (!/^0?[0-7]{3,4}$/.test(text)) throw new UsageError(`${where}.perms: invalid value ${JSON.stringify(v)} (e.g. "0644")`);
  return parseInt(text, 8);
}

function commandSpec(v: unknown, where: string): CommandSpec | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' && v.trim()) return v;
  if (Array.isArray(v) && v.length && v.every((x) => typeof x === 'string')) return v;
  throw new UsageError(`${where}: expected a command string or an argv array`);
}

export function resolveSource(source: string, baseDir: string): string {
  if (source.startsWith('builtin:')) {
    const name = source.slice('builtin:'.length);
    const path = BUILTINS[name];
    if (!path) throw new UsageError(`unknown builtin template ${JSON.stringify(source)}; builtins: ${Object.keys(BUILTINS).map((b) => `builtin:${b}`).join(', ')}`);
    return path;
  }
  const path = resolve(baseDir, source);
  if (!existsSync(path)) throw new UsageError(`template source ${path} does not exist`);
  return path;
}

/**
 * --haproxy-log: where the shipped template's HAProxy sends its request logs
 * (httplog / tcplog): "stdout" (the default, for containers and systemd),
 * "none", or a syslog address ("127.0.0.1:514", "udp@host:514", "/dev/log").
 * Returns the `log` line's target (raw format on stdout/stderr), or null for none.
 */
export function haproxyLogTarget(text: string): { target: string; raw: boolean } | null {
  const v = text.trim();
  if (v === 'none') return null;
  if (v === 'stdout' || v === 'stderr') return { target: v, raw: true };
  if (/^(udp@|udp4@|udp6@|tcp@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v) || /^\/[A-Za-z0-9._/-]+$/.test(v)) return { target: v, raw: false };
  throw new UsageError(`flag --haproxy-log: invalid value ${JSON.stringify(text)}: expected stdout, none, a syslog address host:port (udp@ or tcp@ allowed) or a unix socket path`);
}

type Raw = Record<string, unknown>;

export function templateFromObject(raw: Raw, i: number, baseDir: string, defaults: { wait: string }): TemplateSpec {
  const where = `templates[${i}]`;
  const str = (k: string, required = false): string | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) {
      if (required) throw new UsageError(`${where}.${k} is required`);
      return undefined;
    }
    if (typeof v !== 'string' || !v) throw new UsageError(`${where}.${k}: expected a non-empty string`);
    return v;
  };
  const bool = (k: string, d: boolean): boolean => {
    const v = raw[k];
    if (v === undefined) return d;
    if (typeof v !== 'boolean') throw new UsageError(`${where}.${k}: expected true or false`);
    return v;
  };
  const source = resolveSource(str('source', true)!, baseDir);
  const destination = resolve(baseDir, str('destination', true)!);
  const wait = parseWait(str('wait') ?? defaults.wait, `${where}.wait`);
  let reload: ReloadSpec | undefined;
  const r = raw.reload;
  if (r !== undefined && r !== null) {
    if (typeof r !== 'object') throw new UsageError(`${where}.reload: expected {"master": socket} or {"command": ...} or {"signal": ..., "pidFile": ...}`);
    const o = r as Raw;
    if (typeof o.master === 'string') reload = { master: o.master };
    else if (o.command !== undefined) reload = { command: commandSpec(o.command, `${where}.reload.command`)! };
    else if (typeof o.signal === 'string' && typeof o.pidFile === 'string') reload = { signal: o.signal, pidFile: o.pidFile };
    else throw new UsageError(`${where}.reload: expected {"master": socket} or {"command": ...} or {"signal": ..., "pidFile": ...}`);
  }
  let runtime: TemplateSpec['runtime'];
  if (raw.runtime !== undefined && raw.runtime !== null) {
    const o = raw.runtime as Raw;
    if (typeof o.socket !== 'string') throw new UsageError(`${where}.runtime.socket: expected the HAProxy admin socket path`);
    runtime = { socket: o.socket, stateFile: typeof o.stateFile === 'string' ? o.stateFile : undefined, hostMap: typeof o.hostMap === 'string' ? resolve(baseDir, o.hostMap) : undefined };
  }
  let checkTimeoutMs = 30_000;
  if (raw.checkTimeout !== undefined) {
    try { checkTimeoutMs = parseDuration(typeof raw.checkTimeout === 'string' ? raw.checkTimeout : JSON.stringify(raw.checkTimeout)); } catch (err) { throw new UsageError(`${where}.checkTimeout: ${errorMessage(err)}`); }
  }
  const vars = raw.vars ?? {};
  if (typeof vars !== 'object' || Array.isArray(vars)) throw new UsageError(`${where}.vars: expected an object`);
  return {
    name: str('name') ?? destination,
    source, destination,
    mode: parseMode(raw.perms, where),
    backup: bool('backup', true),
    allowEmpty: bool('allowEmpty', false),
    waitMinMs: wait.minMs, waitMaxMs: wait.maxMs,
    check: commandSpec(raw.check, `${where}.check`),
    checkTimeoutMs,
    reload, runtime,
    vars: vars as Record<string, unknown>,
  };
}

export function loadConfigFile(file: string, defaults: { wait: string }): { templates: TemplateSpec[]; settings: Record<string, unknown> } {
  let raw: Raw;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Raw;
  } catch (err) {
    throw new UsageError(`config ${file}: ${errorMessage(err)}`);
  }
  if (!raw || typeof raw !== 'object' || !Array.isArray(raw.templates)) throw new UsageError(`config ${file}: expected {"templates": [...]}`);
  const baseDir = dirname(resolve(file));
  const templates = (raw.templates as unknown[]).map((t, i) => {
    if (!t || typeof t !== 'object') throw new UsageError(`config ${file}: templates[${i}] is not an object`);
    try {
      return templateFromObject(t as Raw, i, baseDir, defaults);
    } catch (err) {
      throw err instanceof UsageError ? new UsageError(`config ${file}: ${err.message}`) : err;
    }
  });
  const settings = raw.settings ?? {};
  if (typeof settings !== 'object' || Array.isArray(settings)) throw new UsageError(`config ${file}: settings: expected an object`);
  return { templates, settings: settings as Record<string, unknown> };
}
