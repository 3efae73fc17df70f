// One layer a prefix: its raw KV entries and the values they give, and how
// layers are merged (a later prefix wins) and compared (what changed).
import { documentFormat, documentParent, parseConfigDocument } from './documents.ts';
import type { ChangeEvent, ConfigValue, DocumentFormat, InvalidDocument, PrefixFormat, Source } from './types.ts';

/** One KV pair as Consul holds it: the full key and the value as text. */
export interface RawEntry {
  key: string;
  value: string;
}

interface EntryState {
  raw: string;
  format: DocumentFormat | undefined;
  /** a document's keys as last parsed well (relative to the prefix); undefined for a plain key or a document never valid */
  values: Map<string, ConfigValue> | undefined;
}

export interface ApplyResult {
  /** any entry added, removed or with another value */
  rawChanged: boolean;
  invalid: InvalidDocument[];
}

export class Layer {
  readonly prefix: string;
  readonly format: PrefixFormat;
  source: Source = 'none';
  private entries = new Map<string, EntryState>();
  /** this layer's values; replaced, never changed in place */
  values: ReadonlyMap<string, ConfigValue> = new Map();

  constructor(prefix: string, format: PrefixFormat) {
    this.prefix = prefix;
    this.format = format;
  }

  /**
   * Takes the whole content of the prefix (as one Consul answer gave it).
   * Keys equal to the prefix or ending in '/' (folders) are left out. An
   * unchanged document is not parsed again; one that does not parse keeps its
   * previous values and is reported.
   */
  apply(raw: readonly RawEntry[], source: Source): ApplyResult {
    const rel: Array<[string, string]> = [];
    for (const { key, value } of raw) if (key.startsWith(this.prefix)) rel.push([key.slice(this.prefix.length), value]);
    return this.applyRelative(rel, source);
  }

  /** The same, with keys relative to the prefix (as the snapshot holds them). */
  applyRelative(raw: ReadonlyArray<readonly [string, string]>, source: Source): ApplyResult {
    const next = new Map<string, EntryState>();
    const invalid: InvalidDocument[] = [];
    let rawChanged = false;
    for (const [rel, value] of raw) {
      if (rel === '' || rel.endsWith('/')) continue;
      const prev = this.entries.get(rel);
      if (prev && prev.raw === value) {
        next.set(rel, prev);
        continue;
      }
      rawChanged = true;
      const format = documentFormat(rel, this.format);
      if (format === undefined) {
        next.set(rel, { raw: value, format, values: undefined });
        continue;
      }
      const parsed = parseConfigDocument(format, value);
      if (parsed.ok) {
        next.set(rel, { raw: value, format, values: parsed.values });
      } else {
        invalid.push({ key: this.prefix + rel, format, message: parsed.message });
        next.set(rel, { raw: value, format, values: prev?.format === format ? prev.values : undefined });
      }
    }
    if (next.size !== this.entries.size) rawChanged = true;
    this.entries = next;
    this.source = source;
    if (rawChanged) this.values = this.compute();
    return { rawChanged, invalid };
  }

  /** Documents first (in key order), then plain keys on top: a plain key is the more specific statement. */
  private compute(): Map<string, ConfigValue> {
    const out = new Map<string, ConfigValue>();
    const docs: Array<[string, EntryState]> = [];
    for (const [rel, e] of this.entries) if (e.format !== undefined) docs.push([rel, e]);
    docs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [rel, e] of docs) {
      if (!e.values) continue;
      const parent = documentParent(rel);
      for (const [k, v] of e.values) out.set(parent + k, v);
    }
    for (const [rel, e] of this.entries) if (e.format === undefined) out.set(rel, e.raw);
    return out;
  }

  /** The raw entries (relative key, value) for the snapshot. */
  rawEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [rel, e] of this.entries) out.push([rel, e.raw]);
    return out;
  }
}

/** The view of all layers: a key in a later layer wins. One layer's map is used as it is. */
export function mergeLayers(layers: readonly Layer[]): ReadonlyMap<string, ConfigValue> {
  if (layers.length === 1) return layers[0]!.values;
  const out = new Map<string, ConfigValue>();
  for (const layer of layers) for (const [k, v] of layer.values) out.set(k, v);
  return out;
}

/** What changed from one view to the next, keys in order. */
export function diffViews(before: ReadonlyMap<string, ConfigValue>, after: ReadonlyMap<string, ConfigValue>): ChangeEvent[] {
  if (before === after) return [];
  const out: ChangeEvent[] = [];
  for (const [key, newValue] of after) {
    if (!before.has(key)) out.push({ key, oldValue: undefined, newValue, type: 'added' });
    else {
      const oldValue = before.get(key);
      if (!sameValue(oldValue, newValue)) out.push({ key, oldValue, newValue, type: 'modified' });
    }
  }
  for (const [key, oldValue] of before) if (!after.has(key)) out.push({ key, oldValue, newValue: undefined, type: 'deleted' });
  if (out.length > 1) out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}

export function sameValue(a: ConfigValue | undefined, b: ConfigValue | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return Number.isNaN(a) && Number.isNaN(b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!sameValue((a as Record<string, ConfigValue>)[k], (b as Record<string, ConfigValue>)[k])) return false;
  }
  return true;
}
