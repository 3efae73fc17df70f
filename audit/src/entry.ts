// One audit entry: who changed what in the registry, from where, and why.
// Secrets never appear here: entries carry names, ids and origins only.

export interface AuditEntry {
  time: string;
  owner: string;
  /** register | update | status | deregister */
  action: string;
  service: string;
  instance: string;
  source: string;
  /** container id, namespace/service, znode … */
  origin: string;
  originName: string;
  image: string;
  /** the host the registrator runs on */
  host: string;
  /** event | resync | orphan | start | consul-changed | retry | leader */
  reason: string;
  ok: string;
  error: string;
  status: string;
  /** free text: what else a reader needs (e.g. whose orphan was removed) */
  detail?: string;
}

export const AUDIT_FIELDS: ReadonlyArray<keyof AuditEntry> = ['time', 'owner', 'action', 'service', 'instance', 'source', 'origin', 'originName', 'image', 'host', 'reason', 'ok', 'error', 'status', 'detail'];

const KNOWN: ReadonlySet<string> = new Set(AUDIT_FIELDS);

/**
 * Redis stream field list → entry (unknown fields ignored, missing ones empty). The drift
 * report reads tens of thousands: one object of one shape, no intermediate arrays.
 */
export function entryFromFields(fields: string[]): AuditEntry;
export function entryFromFields(fields: string[], id: string): AuditEntry & { id: string };
export function entryFromFields(fields: string[], id?: string): AuditEntry {
  const e: AuditEntry & { id?: string } = { time: '', owner: '', action: '', service: '', instance: '', source: '', origin: '', originName: '', image: '', host: '', reason: '', ok: '', error: '', status: '', detail: '' };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i]!;
    if (KNOWN.has(k)) e[k as keyof AuditEntry] = fields[i + 1]!;
  }
  if (id !== undefined) e.id = id;
  return e;
}
