export { auditCommand } from './command.ts';
export { AuditWriter, type AuditWriterOptions } from './writer.ts';
export { readAudit, followAudit, type ReadOptions } from './reader.ts';
export { AUDIT_FIELDS, entryFromFields, type AuditEntry } from './entry.ts';
export { Heartbeat, WRITERS_PREFIX, type HeartbeatValue } from './heartbeat.ts';
export { readWriters, type OwnerLiveness } from './writers.ts';
export { readCatalog, fetchCatalog, type ServiceRecord } from './catalog.ts';
export { computeDrift, type DriftReport } from './drift.ts';
export { readState } from './state.ts';
