// Service annotations, in Gantry's spelling (gantry.io/…) and consul-k8s's
// (consul.hashicorp.com/…), read into one validated shape. A bad value is an
// AnnotationError naming the annotation, the value and why; the Service is skipped.
import { escapeConsulServiceName, escapeConsulMetaKey, checkConsulMetaValue, checkConsulTag, describe } from '@gantry/core';

export const PREFIXES = ['gantry.io/', 'consul.hashicorp.com/'] as const;

export interface ServiceAnnotations {
  sync?: boolean;
  name?: string;
  tags: string[];
  /** a port name or number choosing the port to register */
  port?: string;
  weight?: number;
  meta: Record<string, string>;
  /** one Consul service per Service port (gantry.io/service-per-port) */
  perPort?: boolean;
  /** values escaping changed to fit Consul: the annotation, the original (untrusted) and the result */
  rewritten: Array<{ annotation: string; original: string; result: string }>;
}

export class AnnotationError extends Error {
  readonly annotation: string;
  readonly value: string;
  readonly reason: string;
  constructor(annotation: string, value: string, reason: string) {
    super(`annotation ${annotation}=${describe(value)}: ${reason}`);
    this.name = 'AnnotationError';
    this.annotation = annotation;
    this.value = value;
    this.reason = reason;
  }
}

function bool(annotation: string, value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new AnnotationError(annotation, value, 'expected true or false');
}

/** Reads the annotations of one Service; throws AnnotationError for the first bad one. */
export function readAnnotations(annotations: Record<string, string> | undefined): ServiceAnnotations {
  const out: ServiceAnnotations = { tags: [], meta: {}, rewritten: [] };
  for (const [full, value] of Object.entries(annotations ?? {})) {
    const prefix = PREFIXES.find((p) => full.startsWith(p));
    if (!prefix) continue;
    const key = full.slice(prefix.length);
    if (key === 'service-sync') out.sync = bool(full, value);
    else if (key === 'service-per-port') out.perPort = bool(full, value);
    else if (key === 'service-name') {
      const r = escapeConsulServiceName(value);
      if (!r.ok) throw new AnnotationError(full, value, r.reason);
      if (r.changed) out.rewritten.push({ annotation: full, original: value, result: r.value });
      out.name = r.value;
    } else if (key === 'service-tags') {
      for (const tag of value.split(',').map((s) => s.trim()).filter(Boolean)) {
        const r = checkConsulTag(tag);
        if (!r.ok) throw new AnnotationError(full, value, r.reason);
        out.tags.push(tag);
      }
    } else if (key === 'service-port') {
      if (!/^([0-9]{1,5}|[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?)$/.test(value)) throw new AnnotationError(full, value, 'expected a port number or a port name');
      out.port = value;
    } else if (key === 'service-weight') {
      if (!/^[0-9]{1,6}$/.test(value) || Number(value) < 1) throw new AnnotationError(full, value, 'expected a whole number of at least 1');
      out.weight = Number(value);
    } else if (key.startsWith('service-meta-')) {
      const k = escapeConsulMetaKey(key.slice('service-meta-'.length));
      if (!k.ok) throw new AnnotationError(full, value, k.reason);
      const v = checkConsulMetaValue(value);
      if (!v.ok) throw new AnnotationError(full, value, v.reason);
      if (k.changed) out.rewritten.push({ annotation: full, original: key.slice('service-meta-'.length), result: k.value });
      out.meta[k.value] = value;
    }
  }
  return out;
}
