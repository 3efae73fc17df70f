// Container metadata exactly as gliderlabs/registrator reads it: SERVICE_<KEY>
// and SERVICE_<port>_<KEY> from the environment and from labels (labels win,
// a port's key wins over the generic one), plus `gantry.<key>` /
// `gantry.<port>.<key>` labels as the modern spelling. Keys come out lower case.

export interface Metadata {
  /** generic and port-specific keys merged, lower case: name, tags, id, ignore, check_http, … */
  values: Record<string, string>;
  /** where each key came from, for error messages: env SERVICE_80_NAME, label gantry.name … */
  origin: Record<string, string>;
  /** true when a port-specific name was given (so no -<port> suffix is added) */
  portSpecificName: boolean;
}

const ENV_GENERIC = /^SERVICE_([A-Za-z][A-Za-z0-9_]*)$/;
const ENV_PORT = /^SERVICE_(\d+)_([A-Za-z][A-Za-z0-9_]*)$/;
const LABEL_GENERIC = /^gantry\.([a-z][a-z0-9_-]*)$/;
const LABEL_PORT = /^gantry\.(\d+)\.([a-z][a-z0-9_-]*)$/;

export interface RawMeta { key: string; value: string; where: string; port?: string }

/** Every SERVICE_* / gantry.* entry of a container, in precedence order (env, then labels). */
export function rawMetadata(env: readonly string[] | undefined, labels: Record<string, string> | undefined): RawMeta[] {
  const out: RawMeta[] = [];
  const take = (k: string, v: string, where: string): void => {
    const p = ENV_PORT.exec(k);
    if (p) { out.push({ key: p[2]!.toLowerCase(), value: v, where, port: p[1]! }); return; }
    const g = ENV_GENERIC.exec(k);
    if (g) { out.push({ key: g[1]!.toLowerCase(), value: v, where }); return; }
    const lp = LABEL_PORT.exec(k);
    if (lp) { out.push({ key: lp[2]!.replace(/-/g, '_'), value: v, where, port: lp[1]! }); return; }
    const lg = LABEL_GENERIC.exec(k);
    if (lg) out.push({ key: lg[1]!.replace(/-/g, '_'), value: v, where });
  };
  for (const kv of env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) take(kv.slice(0, i), kv.slice(i + 1), `env ${kv.slice(0, i)}`);
  }
  for (const [k, v] of Object.entries(labels ?? {})) take(k, v, `label ${k}`);
  return out;
}

/** The metadata for one exposed port (e.g. "80"): generic keys, then that port's keys on top. */
export function metadataForPort(raw: readonly RawMeta[], port: string): Metadata {
  const values: Record<string, string> = {};
  const origin: Record<string, string> = {};
  for (const r of raw) if (!r.port) { values[r.key] = r.value; origin[r.key] = r.where; }
  let portSpecificName = false;
  for (const r of raw) {
    if (r.port !== port) continue;
    values[r.key] = r.value;
    origin[r.key] = r.where;
    if (r.key === 'name') portSpecificName = true;
  }
  return { values, origin, portSpecificName };
}

/** Port numbers named in SERVICE_<port>_* keys that are not a valid port: reported, not guessed. */
export function badPortKeys(env: readonly string[] | undefined, labels: Record<string, string> | undefined): Array<{ where: string; reason: string }> {
  const out: Array<{ where: string; reason: string }> = [];
  const check = (k: string, where: string): void => {
    const m = /^SERVICE_([^_]+)_[A-Za-z]/.exec(k);
    if (m && /\d/.test(m[1]!) && !/^\d+$/.test(m[1]!)) out.push({ where, reason: `port ${JSON.stringify(m[1])} is not a number` });
    else if (m && /^\d+$/.test(m[1]!) && (Number(m[1]) < 1 || Number(m[1]) > 65535)) out.push({ where, reason: `port ${m[1]} is out of range` });
  };
  for (const kv of env ?? []) { const i = kv.indexOf('='); if (i > 0) check(kv.slice(0, i), `env ${kv.slice(0, i)}`); }
  for (const k of Object.keys(labels ?? {})) {
    check(k, `label ${k}`);
    const m = /^gantry\.([^.]+)\.[a-z]/.exec(k);
    if (m && /\d/.test(m[1]!) && !/^\d+$/.test(m[1]!)) out.push({ where: `label ${k}`, reason: `port ${JSON.stringify(m[1])} is not a number` });
  }
  return out;
}

/** SERVICE_TAGS as registrator splits it, with `\,` for a comma inside a tag. */
export function splitTags(value: string | undefined): string[] {
  if (!value) return [];
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && value[i + 1] === ',') { cur += ','; i++; continue; }
    if (c === ',') { if (cur.trim()) out.push(cur.trim()); cur = ''; continue; }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
