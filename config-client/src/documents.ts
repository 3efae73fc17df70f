// Which keys hold a whole document, and how a document becomes keys of the view.
//
// The rule (also in the README): with a prefix's format `auto` (the default) a
// key whose name ends in .yaml, .yml, .json or .properties (any case) is a
// document; with `yaml`, `json` or `properties` every key of the prefix is one;
// with `plain` none is. A document's top level must be a mapping; its leaves
// become keys under the document key's parent path ('/'-joined; in a properties
// document a '.' in a key is a level too). Lists are one value.
import { parseDocument } from 'yaml';
import { errorMessage } from '@gantry/core';
import { parseProperties } from './properties.ts';
import type { ConfigValue, DocumentFormat, PrefixFormat } from './types.ts';

const EXTENSION = /\.(ya?ml|json|properties)$/i;

export function documentFormat(relKey: string, format: PrefixFormat): DocumentFormat | undefined {
  if (format === 'plain') return undefined;
  if (format !== 'auto') return format;
  const ext = EXTENSION.exec(relKey)?.[1]?.toLowerCase();
  if (ext === undefined) return undefined;
  return ext === 'yml' || ext === 'yaml' ? 'yaml' : (ext as DocumentFormat);
}

/** The path a document's keys go under: its key's parent, with a trailing '/' ('' at the prefix's top). */
export function documentParent(relKey: string): string {
  return relKey.slice(0, relKey.lastIndexOf('/') + 1);
}

export type ParseResult = { ok: true; values: Map<string, ConfigValue> } | { ok: false; message: string };

/** Parses a document into flat keys (relative to the document's parent, no leading '/'). */
export function parseConfigDocument(format: DocumentFormat, text: string): ParseResult {
  try {
    if (format === 'properties') {
      const values = new Map<string, ConfigValue>();
      for (const [k, v] of parseProperties(text)) values.set(k.split('.').join('/'), v);
      return { ok: true, values };
    }
    const data = format === 'json' ? parseJson(text) : parseYaml(text);
    if (data === null || data === undefined) return { ok: true, values: new Map() };
    if (!isMapping(data)) {
      return { ok: false, message: `expected a mapping at the top level, got ${Array.isArray(data) ? 'a list' : `a ${typeof data}`}` };
    }
    const values = new Map<string, ConfigValue>();
    flatten(data, '', values);
    return { ok: true, values };
  } catch (err) {
    return { ok: false, message: errorMessage(err) };
  }
}

function parseJson(text: string): unknown {
  return JSON.parse(text) as unknown;
}

function parseYaml(text: string): unknown {
  const doc = parseDocument(text, { schema: 'core', uniqueKeys: true, prettyErrors: true, strict: true });
  const problem = doc.errors[0];
  if (problem) throw problem;
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function flatten(obj: Record<string, unknown>, base: string, out: Map<string, ConfigValue>): void {
  for (const [k, v] of Object.entries(obj)) {
    const path = base === '' ? k : `${base}/${k}`;
    if (isMapping(v)) flatten(v, path, out);
    else out.set(path, freeze(toValue(v)));
  }
}

/** Whatever a parser returned, as a JSON-like value (a Date or a Map from a YAML tag becomes its plain form). */
function toValue(v: unknown): ConfigValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toValue);
  if (v instanceof Map) return toValue(Object.fromEntries(v));
  if (v instanceof Set) return [...v].map(toValue);
  if (typeof v === 'object') {
    const out: Record<string, ConfigValue> = {};
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: toValue(x), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return null; // a function or a symbol: nothing a config value can be
}

/** Values in the view are shared by every reader: lists and objects are frozen. */
function freeze(v: ConfigValue): ConfigValue {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) freeze(x);
    Object.freeze(v);
  }
  return v;
}
