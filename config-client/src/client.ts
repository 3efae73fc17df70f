// ConfigClient: Consul KV prefixes mirrored in memory. One blocking-query loop
// a prefix (watcher.ts) feeds its layer (layers.ts); the merged view is
// swapped in whole (view.ts), then change events go out and the snapshot is
// written (snapshot.ts). Reads are memory reads, never a network call.
import {
  GantryError,
  consulConfigFromEnv,
  createConsul,
  createLogger,
  errorMessage,
  escapeLogField,
  formatDuration,
  type ConsulClient,
  type ConsulConfig,
  type Logger,
} from '@gantry/core';
import { asBoolean, asNumber, asString } from './convert.ts';
import { Emitter, type Listener } from './events.ts';
import { Layer, diffViews, mergeLayers, type RawEntry } from './layers.ts';
import { normalizeOptions, type Settings } from './options.ts';
import { SnapshotWriter, readSnapshot, serializeSnapshot, type SnapshotData, type SnapshotRead } from './snapshot.ts';
import type { ChangeEvent, ClientEvents, ConfigClientOptions, ConfigTree, ConfigValue, InvalidDocument, Source } from './types.ts';
import { View } from './view.ts';
import { runWatcher } from './watcher.ts';

interface Starting {
  resolve(): void;
  reject(err: Error): void;
  snapshot: Promise<SnapshotRead | undefined>;
}

export interface PrefixStatus {
  prefix: string;
  source: Source;
  /** the last error reading it from Consul, while it lasts */
  error: string | undefined;
}

function isConsulClient(c: ConsulConfig | ConsulClient): c is ConsulClient {
  return typeof (c as Partial<ConsulClient>).request === 'function';
}

export class ConfigClient {
  /** the current view's values: the one field a read touches */
  private values: ReadonlyMap<string, ConfigValue>;
  private view: View;
  private readonly settings: Settings;
  private readonly consul: ConsulClient;
  private readonly ownsConsul: boolean;
  private readonly log: Logger;
  private readonly layers: Layer[];
  private readonly errors: Array<unknown>;
  private readonly aclWarned: boolean[];
  private readonly emitter: Emitter<ClientEvents>;
  private readonly abort = new AbortController();
  private readonly watchers: Array<Promise<void>> = [];
  private readonly writer: SnapshotWriter | undefined;
  private starting: Starting | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private snapshotState: 'unread' | 'used' | 'unusable' = 'unread';
  private lastSource: Source = 'none';
  private closing: Promise<void> | undefined;

  /** Use ConfigClient.start(). */
  private constructor(options: ConfigClientOptions) {
    this.settings = normalizeOptions(options);
    this.log = options.logger ?? createLogger({ component: 'config-client' });
    const consul = options.consul ?? consulConfigFromEnv();
    this.ownsConsul = !isConsulClient(consul);
    this.consul = isConsulClient(consul) ? consul : createConsul(consul);
    this.layers = this.settings.prefixes.map((p) => new Layer(p.prefix, p.format));
    this.errors = this.layers.map(() => undefined);
    this.aclWarned = this.layers.map(() => false);
    this.values = new Map();
    this.view = new View(this.values);
    this.emitter = new Emitter<ClientEvents>((event, err) => {
      this.log.error({ event, err: errorMessage(err) }, 'a config-client listener threw; the other listeners still ran');
    });
    const path = this.settings.snapshot;
    this.writer = path === undefined ? undefined : new SnapshotWriter({
      path,
      serialize: () => {
        const prefixes: Record<string, Array<[string, string]>> = {};
        for (const l of this.layers) prefixes[l.prefix] = l.rawEntries();
        return serializeSnapshot(prefixes);
      },
      onWritten: () => this.emitter.emit('snapshot', { path }),
      onError: (err) => this.warn('E_SNAPSHOT_WRITE', `cannot write the snapshot ${path}: ${errorMessage(err)}`),
    });
  }

  /**
   * Resolves once a complete view is loaded: from Consul, or from the snapshot
   * when Consul cannot be read. Without either it rejects after startTimeout
   * (or, with failFast false, starts empty and keeps trying).
   */
  static async start(options: ConfigClientOptions): Promise<ConfigClient> {
    const client = new ConfigClient(options);
    try {
      await client.begin();
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  // ---- reads: memory only --------------------------------------------------

  get(key: string): ConfigValue | undefined {
    return this.values.get(key);
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  getString(key: string): string | undefined;
  getString(key: string, fallback: string): string;
  getString(key: string, fallback?: string): string | undefined {
    return asString(this.values.get(key)) ?? fallback;
  }

  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
  getNumber(key: string, fallback?: number): number | undefined {
    return asNumber(this.values.get(key)) ?? fallback;
  }

  getBoolean(key: string): boolean | undefined;
  getBoolean(key: string, fallback: boolean): boolean;
  getBoolean(key: string, fallback?: boolean): boolean | undefined {
    return asBoolean(this.values.get(key)) ?? fallback;
  }

  /** A string value parsed as JSON (parsed once a view), or a document's structured value; the fallback when absent or not JSON. */
  getJSON<T = unknown>(key: string, fallback: T): T {
    const view = this.view;
    const v = view.values.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'string') return v as T;
    let hit = view.jsonCache.get(key);
    if (!hit) {
      try {
        hit = { ok: true, value: deepFreeze(JSON.parse(v)) };
      } catch {
        hit = { ok: false, value: undefined };
      }
      view.jsonCache.set(key, hit);
    }
    return hit.ok ? (hit.value as T) : fallback;
  }

  /** The keys in order; with a prefix, those that start with it. */
  keys(prefix = ''): string[] {
    return this.view.keys(prefix);
  }

  /** The keys under a folder as a nested object. */
  tree(prefix = ''): ConfigTree {
    return this.view.tree(prefix);
  }

  get size(): number {
    return this.values.size;
  }

  /** Where the view came from: 'consul' once every prefix has been read from Consul. */
  get source(): Source {
    return this.computeSource();
  }

  status(): PrefixStatus[] {
    return this.layers.map((l, i) => ({ prefix: l.prefix, source: l.source, error: this.errors[i] === undefined ? undefined : errorMessage(this.errors[i]) }));
  }

  // ---- events --------------------------------------------------------------

  /** Returns a function that removes the listener. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): void {
    this.emitter.off(event, listener);
  }

  /** Calls cb for each change of the key, or of a key under it (`db` or `db/`: db/url, db/pool/max ...). */
  watch(keyOrPrefix: string, cb: Listener<ChangeEvent>): () => void {
    const folder = keyOrPrefix.endsWith('/') ? keyOrPrefix : `${keyOrPrefix}/`;
    const match = keyOrPrefix === '' ? () => true : (k: string) => k === keyOrPrefix || k.startsWith(folder);
    return this.on('change', (e) => { if (match(e.key)) cb(e); });
  }

  // ---- life ----------------------------------------------------------------

  /** Ends every request, timer and snapshot write; resolves when none is left. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(new GantryError('E_CLOSED', 'config-client closed'));
      clearTimeout(this.startTimer);
      if (this.starting) {
        this.starting.reject(new GantryError('E_CLOSED', 'config-client closed before it started'));
        this.starting = undefined;
      }
      await Promise.allSettled(this.watchers);
      await this.writer?.idle();
      if (this.ownsConsul) {
        this.consul.close();
        // destroyed sockets finish closing on the next turn of the event loop
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      this.emitter.clear();
    })();
    return this.closing;
  }

  private begin(): Promise<void> {
    const s = this.settings;
    const snapshot = s.snapshot === undefined ? Promise.resolve(undefined) : readSnapshot(s.snapshot).then((r) => {
      if (!r.ok && r.reason !== 'missing') this.warn('E_SNAPSHOT_CORRUPT', `${r.message}; it is ignored`);
      return r;
    });
    return new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject, snapshot };
      this.layers.forEach((layer, i) => {
        this.watchers.push(runWatcher({
          consul: this.consul,
          prefix: layer.prefix,
          consistency: s.consistency,
          waitMs: s.waitMs,
          timeoutMs: s.timeoutMs,
          backoff: s.backoff,
          rate: s.rate,
          signal: this.abort.signal,
          onAnswer: (answer) => {
            if (answer.filteredByAcl && !this.aclWarned[i]) {
              this.aclWarned[i] = true;
              this.warn('E_ACL_FILTERED', `Consul left out keys under ${JSON.stringify(layer.prefix)} that the ACL token may not read`, layer.prefix);
            }
            this.onAnswer(i, answer.entries);
          },
          onError: (err, attempt, delayMs) => this.onWatchError(i, err, attempt, delayMs),
        }));
      });
      this.startTimer = setTimeout(() => void this.startTimedOut(), s.startTimeoutMs);
    });
  }

  private onAnswer(i: number, entries: RawEntry[]): void {
    const layer = this.layers[i]!;
    if (this.errors[i] !== undefined) {
      this.errors[i] = undefined;
      this.log.info({ prefix: escapeLogField(layer.prefix) }, 'Consul answers again for this prefix');
    }
    const wasConsul = layer.source === 'consul';
    const { rawChanged, invalid } = layer.apply(entries, 'consul');
    this.commit(rawChanged, invalid, !wasConsul || rawChanged);
    if (this.starting && this.layers.every((l) => l.source === 'consul')) this.finishStart();
  }

  private onWatchError(i: number, err: unknown, attempt: number, delayMs: number): void {
    const prefix = this.layers[i]!.prefix;
    const first = this.errors[i] === undefined;
    this.errors[i] = err;
    const message = errorMessage(err);
    const fields = { prefix: escapeLogField(prefix), err: message, attempt, retryInMs: delayMs };
    if (first) this.log.warn(fields, 'cannot read the prefix from Consul; the view in memory stays, retrying with backoff');
    else this.log.debug(fields, 'still cannot read the prefix from Consul');
    this.emitter.emit('warning', { code: (err as { code?: string }).code ?? 'E_CONSUL', message, prefix });
    if (this.starting) void this.startFromSnapshot();
  }

  /** Swaps in the new view when anything changed, then tells listeners and writes the snapshot. */
  private commit(rawChanged: boolean, invalid: readonly InvalidDocument[], writeSnapshot: boolean): void {
    for (const doc of invalid) {
      this.log.warn({ key: escapeLogField(doc.key), format: doc.format, err: escapeLogField(doc.message, 1024) }, 'document does not parse; its previous values stay');
    }
    let changes: ChangeEvent[] = [];
    if (rawChanged) {
      const merged = mergeLayers(this.layers);
      if (this.emitter.has('change') || this.emitter.has('changes')) {
        changes = diffViews(this.values, merged);
        if (changes.length > 0) this.swap(merged);
      } else if (merged !== this.values) {
        // nobody to tell (e.g. the first load): no need to work out what changed
        this.swap(merged);
      }
    }
    if (writeSnapshot && this.writer && this.layers.every((l) => l.source !== 'none')) this.writer.schedule();
    for (const doc of invalid) this.emitter.emit('invalid', doc);
    if (changes.length > 0) {
      this.log.debug({ changed: changes.length, keys: changes.slice(0, 10).map((c) => escapeLogField(c.key)) }, 'configuration changed');
      this.emitter.emit('changes', changes);
      for (const c of changes) {
        if (this.abort.signal.aborted) break; // a listener closed the client
        this.emitter.emit('change', c);
      }
    }
    const source = this.computeSource();
    if (source !== this.lastSource) {
      const previous = this.lastSource;
      this.lastSource = source;
      this.emitter.emit('source', { source, previous });
    }
  }

  /** The one assignment that makes a new view visible to every reader. */
  private swap(values: ReadonlyMap<string, ConfigValue>): void {
    this.view = new View(values);
    this.values = values;
  }

  private computeSource(): Source {
    if (this.layers.every((l) => l.source === 'consul')) return 'consul';
    return this.layers.some((l) => l.source === 'snapshot') ? 'snapshot' : 'none';
  }

  private async startFromSnapshot(): Promise<boolean> {
    const read = await this.starting?.snapshot;
    if (!this.starting || !read?.ok) return false;
    if (!this.loadSnapshot(read.data)) return false;
    this.finishStart();
    return true;
  }

  /** Fills the layers Consul has not given yet from the snapshot; false when it does not cover every prefix. */
  private loadSnapshot(data: SnapshotData): boolean {
    if (this.snapshotState !== 'unread') return this.snapshotState === 'used';
    const missing = this.layers.filter((l) => !Object.hasOwn(data.prefixes, l.prefix)).map((l) => l.prefix);
    if (missing.length > 0) {
      this.warn('E_SNAPSHOT_PREFIXES', `the snapshot ${this.settings.snapshot} has no entries for ${missing.map((p) => JSON.stringify(p)).join(', ')}; it is ignored`);
      this.snapshotState = 'unusable';
      return false;
    }
    this.snapshotState = 'used';
    let rawChanged = false;
    const invalid: InvalidDocument[] = [];
    for (const layer of this.layers) {
      if (layer.source === 'consul') continue;
      const r = layer.applyRelative(data.prefixes[layer.prefix]!, 'snapshot');
      rawChanged ||= r.rawChanged;
      invalid.push(...r.invalid);
    }
    this.log.warn({ snapshot: this.settings.snapshot, savedAt: data.savedAt }, 'Consul cannot be read: configuration loaded from the snapshot; it catches up when Consul answers');
    this.commit(rawChanged, invalid, false);
    return true;
  }

  private async startTimedOut(): Promise<void> {
    const starting = this.starting;
    if (!starting) return;
    const read = await starting.snapshot;
    if (this.starting !== starting) return;
    if (read?.ok && this.loadSnapshot(read.data)) {
      this.finishStart();
      return;
    }
    const s = this.settings;
    const tried = this.layers.map((l, i) => `${JSON.stringify(l.prefix)}: ${l.source === 'consul' ? 'read' : this.errors[i] === undefined ? 'no answer yet' : errorMessage(this.errors[i])}`);
    const snap = s.snapshot === undefined
      ? 'no snapshot configured (option snapshot)'
      : read === undefined ? 'no snapshot' : read.ok ? `snapshot ${s.snapshot} does not cover these prefixes` : read.message;
    const message = `config-client: no configuration after ${formatDuration(s.startTimeoutMs)}: tried Consul at ${this.consul.baseUrl} (${tried.join('; ')}) and ${snap}`;
    if (!s.failFast) {
      this.log.warn({ err: message }, 'starting with an empty configuration (failFast: false); it fills in when Consul answers');
      this.finishStart();
      return;
    }
    this.starting = undefined;
    starting.reject(new GantryError('E_CONFIG_START', message));
  }

  private finishStart(): void {
    const starting = this.starting;
    if (!starting) return;
    this.starting = undefined;
    clearTimeout(this.startTimer);
    this.lastSource = this.computeSource();
    this.log.info({ source: this.lastSource, keys: this.values.size, prefixes: this.layers.map((l) => escapeLogField(l.prefix)) }, 'configuration loaded');
    starting.resolve();
  }

  private warn(code: string, message: string, prefix?: string): void {
    this.log.warn({ code, err: message }, message);
    this.emitter.emit('warning', prefix === undefined ? { code, message } : { code, message, prefix });
  }
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
