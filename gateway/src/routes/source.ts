// Keeps the live route table in step with the catalog watcher: every snapshot
// (catalog, health or KV change) builds a new table off to the side and swaps it
// in with one assignment. KV policy changes are logged, counted and audited
// (who/what/when, in the registrator's audit stream); new bad tags or KV values
// are logged once, naming the tag or key.
import { escapeLogField, type Logger } from '@gantry/core';
import type { AuditEntry } from '@gantry/audit';
import type { CatalogSnapshot } from './snapshot.ts';
import type { RouteTable } from './table.ts';
import { TableBuilder, type BuildOptions } from './builder.ts';
import { POLICY_KEY } from '../policy/config.ts';
import type { OutlierDetector } from '../policy/outlier.ts';

/** what the gateway needs of the shared catalog watcher */
export interface SnapshotSource {
  snapshot(): CatalogSnapshot | undefined;
  onChange(fn: (snap: CatalogSnapshot) => void): () => void;
}

export interface RouteSourceOptions {
  source: SnapshotSource;
  build: BuildOptions;
  outliers: OutlierDetector;
  log: Logger;
  /** who the audit entries name (gateway@host) */
  owner: string;
  host: string;
  swap: (table: RouteTable, info: { buildMs: number; version: number; changed: { services: number; routes: number } }) => void;
  audit?: (e: AuditEntry) => void;
  onPolicyChange?: (key: string) => void;
}

export class RouteSource {
  private lastKv = new Map<string, string>();
  private reported = new Set<string>();
  private first = true;
  private unsubscribe: (() => void) | undefined;
  private pending: CatalogSnapshot | undefined;
  private scheduled = false;
  private readonly builder: TableBuilder;

  private readonly o: RouteSourceOptions;
  constructor(o: RouteSourceOptions) {
    this.o = o;
    this.builder = new TableBuilder(o.outliers, o.build);
  }

  start(): void {
    this.unsubscribe = this.o.source.onChange((snap) => this.schedule(snap));
    const snap = this.o.source.snapshot();
    if (snap) this.apply(snap);
  }

  stop(): void { this.unsubscribe?.(); }

  /** changes arriving together are built once (the newest snapshot wins) */
  private schedule(snap: CatalogSnapshot): void {
    this.pending = snap;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const s = this.pending;
      this.pending = undefined;
      if (s) this.apply(s);
    });
  }

  apply(snap: CatalogSnapshot): RouteTable {
    const t0 = performance.now();
    const { table, errors, changed } = this.builder.build(snap);
    const buildMs = performance.now() - t0;
    this.o.swap(table, { buildMs, version: snap.version, changed });
    this.reportErrors(errors);
    this.diffPolicies(snap);
    return table;
  }

  private reportErrors(errors: string[]): void {
    const now = new Set(errors);
    for (const e of now) if (!this.reported.has(e)) this.o.log.error({ problem: escapeLogField(e, 512) }, 'route or policy refused; everything else keeps working');
    this.reported = now;
  }

  private diffPolicies(snap: CatalogSnapshot): void {
    const next = new Map<string, string>();
    for (const [k, v] of snap.kv) if (POLICY_KEY.test(k)) next.set(k, v);
    if (this.first) { this.first = false; this.lastKv = next; return; }
    const keys = new Set([...this.lastKv.keys(), ...next.keys()]);
    for (const key of keys) {
      const before = this.lastKv.get(key);
      const after = next.get(key);
      if (before === after) continue;
      const action = before === undefined ? 'policy-set' : after === undefined ? 'policy-delete' : 'policy-update';
      const service = POLICY_KEY.exec(key)![2]!;
      this.o.onPolicyChange?.(key);
      this.o.log.info({ key: escapeLogField(key), service: escapeLogField(service), action, kvIndex: snap.indexes.kv }, 'route policy changed in Consul KV; applied');
      this.o.audit?.({
        time: new Date().toISOString(), owner: this.o.owner, action, service: escapeLogField(service), instance: '',
        source: 'consul-kv', origin: escapeLogField(key), originName: `kv-index:${snap.indexes.kv ?? ''}`,
        image: '', host: this.o.host, reason: 'kv-changed', ok: 'true', error: '', status: escapeLogField(after ?? '', 512),
      });
    }
    this.lastKv = next;
  }
}
