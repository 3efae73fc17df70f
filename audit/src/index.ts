export { auditCommand } from './command.ts';
export { AuditWriter, type AuditWriterOptions } from './writer.ts';
export { readAudit, type ReadOptions } from './reader.ts';
export { AUDIT_FIELDS, entryFromFields, type AuditEntry } from './entry.ts';
