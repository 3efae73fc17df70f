// The audit entry of one change the reconciler applied.
import { hostname } from 'node:os';
import type { AuditEntry } from '@gantry/audit';
import type { Applied } from './reconciler.ts';

export function entryFromApplied(owner: string, a: Applied, host = hostname()): AuditEntry {
  return {
    time: new Date().toISOString(),
    owner,
    action: a.action,
    service: a.instance.name,
    instance: a.instance.id,
    source: a.instance.origin.source,
    origin: a.instance.origin.ref,
    originName: a.instance.origin.name ?? '',
    image: a.instance.origin.image ?? '',
    host: a.instance.origin.host ?? host,
    reason: a.reason,
    ok: String(a.ok),
    error: a.error ?? '',
    status: a.instance.status ?? '',
  };
}

/** A registration the source refused (bad label, annotation, znode, static entry), with the reason. */
export function entryFromProblem(owner: string, source: string, p: { container: string; name: string; where: string; reason: string; port?: string }, host = hostname()): AuditEntry {
  return {
    time: new Date().toISOString(), owner, action: 'refused', service: '', instance: '', source, origin: p.container, originName: p.name, image: '', host,
    reason: 'bad-metadata', ok: 'false', error: `${p.where}${p.port ? ` (port ${p.port})` : ''}: ${p.reason}`, status: '',
  };
}
