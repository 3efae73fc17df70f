// ZooKeeper → Consul: every Dubbo provider under `<root>/<interface>/providers`
// (each root, each interface, including ones created later) is a desired
// instance. Child watches mark what to list again; a full listing (at start,
// every resync, after every reconnect and new session) reads everything and
// replaces the known set only once it is complete: a listing that fails throws,
// so the reconciler writes nothing and nothing is deregistered from what a
// half-done listing missed.
import { describe, escapeLogField, errorMessage, mapLimit, type Logger, type OwnerId, type ServiceInstance } from '@gantry/core';
import type { Source } from '../../reconciler.ts';
import { ChangeSignal } from '../../changes.ts';
import { parseProviderNode } from './dubbo-url.ts';
import { providerToInstance, type NameRule } from './mapping.ts';
import type { ZkSession, Watcher } from './session.ts';

export interface ZkSourceOptions {
  session: ZkSession;
  /** Dubbo roots, default ['/dubbo'] */
  roots: string[];
  owner: OwnerId;
  nameRule: NameRule;
  log: Logger;
  /** how many ZooKeeper calls at once during a listing (default 32) */
  concurrency?: number;
  /** an unparseable or invalid node (counted) */
  onProblem?: (path: string, reason: string) => void;
  /** a node not imported on purpose (consumer, disabled, our own) */
  onSkipped?: (reason: string) => void;
}

const join = (...parts: string[]): string => parts.join('/').replace(/\/+/g, '/');

export class ZooKeeperSource implements Source {
  readonly kind = 'zookeeper' as const;
  private readonly o: ZkSourceOptions;
  /** providers path → its instances, as of the last listing of that path */
  private providers = new Map<string, ServiceInstance[]>();
  /** paths with a watch pending in the current session (a watch fires once) */
  private readonly watched = new Set<string>();
  private watchGen = -1;
  /** providers paths and roots a watch named since the last pass */
  private readonly dirty = new Set<string>();
  private readonly dirtyRoots = new Set<string>();
  private readonly signal = new ChangeSignal();
  /** the session generation the last complete listing was made in */
  private listedGen = -1;
  /** providers paths whose node names failed, reported once per distinct problem */
  private readonly reported = new Map<string, string>();
  /** set by every (re)connect: the next pass lists everything */
  private needFull = true;

  constructor(o: ZkSourceOptions) {
    this.o = o;
    // a new session or a reconnect: what changed meanwhile was not watched; list everything
    o.session.on('connected', () => { this.needFull = true; this.signal.poke(); });
  }

  /** true once a complete listing was made in the current session */
  get synced(): boolean {
    return this.listedGen === this.o.session.generation && this.o.session.connected;
  }

  changes(signal: AbortSignal): AsyncIterable<void> {
    return this.signal.stream(signal);
  }

  async snapshot(opts?: { full: boolean }): Promise<ServiceInstance[]> {
    const s = this.o.session;
    if (this.watchGen !== s.generation) { this.watched.clear(); this.watchGen = s.generation; }
    if (opts?.full || this.needFull || this.listedGen !== s.generation || this.dirtyRoots.size > 0) await this.listAll();
    else await this.listDirty();
    return [...this.providers.values()].flat();
  }

  private watcher(key: string, dirty: Set<string>, path: string): Watcher | undefined {
    if (this.watched.has(key)) return undefined;
    this.watched.add(key);
    const gen = this.o.session.generation;
    return () => {
      if (gen !== this.o.session.generation) return;
      this.watched.delete(key);
      dirty.add(path);
      this.signal.poke();
    };
  }

  /** Lists one providers path (watching it, or its creation); undefined stands for "no such path". */
  private async listProviders(path: string): Promise<ServiceInstance[]> {
    const s = this.o.session;
    const w = this.watcher(`c:${path}`, this.dirty, path);
    let names: string[] | undefined;
    try {
      names = await s.children(path, w);
    } catch (err) {
      if (w) this.watched.delete(`c:${path}`);
      throw err;
    }
    if (names === undefined) {
      if (w) this.watched.delete(`c:${path}`);
      // not there yet (an interface with consumers only, or being created): watch for it
      const ew = this.watcher(`e:${path}`, this.dirty, path);
      const stat = await s.exists(path, ew).catch((err: unknown) => { if (ew) this.watched.delete(`e:${path}`); throw err; });
      if (stat) return this.listProviders(path); // created in between
      return [];
    }
    const out: ServiceInstance[] = [];
    const problems: string[] = [];
    for (const name of names) {
      const where = `${path}/${escapeLogField(name, 120)}`;
      const parsed = parseProviderNode(name);
      if (!parsed.ok) { problems.push(`${where}: ${parsed.reason}`); continue; }
      const r = providerToInstance(parsed.url, { owner: this.o.owner, path, nameRule: this.o.nameRule });
      if (r.kind === 'instance') out.push(r.instance);
      else if (r.kind === 'skip') this.o.onSkipped?.(r.reason);
      else problems.push(`${where}: ${r.reason}`);
    }
    const key = problems.join('\n');
    if (key !== (this.reported.get(path) ?? '')) {
      for (const p of problems) {
        this.o.log.warn({ path: escapeLogField(path), problem: p }, 'zookeeper: provider node skipped');
        this.o.onProblem?.(path, p);
      }
    }
    if (problems.length) this.reported.set(path, key); else this.reported.delete(path);
    return out;
  }

  /** Every root, every interface: a new known set, swapped in only when complete. */
  private async listAll(): Promise<void> {
    const s = this.o.session;
    const gen = s.generation;
    const t0 = performance.now();
    this.dirtyRoots.clear();
    this.dirty.clear();
    this.needFull = false;
    try {
      await this.listEverything(gen, t0);
    } catch (err) {
      this.needFull = true;
      throw err;
    }
  }

  private async listEverything(gen: number, t0: number): Promise<void> {
    const s = this.o.session;
    const paths: string[] = [];
    for (const root of this.o.roots) {
      const w = this.watcher(`c:${root}`, this.dirtyRoots, root);
      let ifaces: string[] | undefined;
      try {
        ifaces = await s.children(root, w);
      } catch (err) {
        if (w) this.watched.delete(`c:${root}`);
        throw err;
      }
      if (ifaces === undefined) {
        if (w) this.watched.delete(`c:${root}`);
        const ew = this.watcher(`e:${root}`, this.dirtyRoots, root);
        await s.exists(root, ew).catch((err: unknown) => { if (ew) this.watched.delete(`e:${root}`); throw err; });
        continue;
      }
      for (const iface of ifaces) paths.push(join(root, iface, 'providers'));
    }
    const next = new Map<string, ServiceInstance[]>();
    await mapLimit(paths, this.o.concurrency ?? 32, async (p) => {
      const list = await this.listProviders(p);
      if (list.length) next.set(p, list);
    });
    if (gen !== s.generation) throw new Error('zookeeper session changed during the listing; listing again');
    this.providers = next;
    this.listedGen = gen;
    this.o.log.debug({ interfaces: paths.length, providers: [...next.values()].reduce((n, l) => n + l.length, 0), ms: Math.round(performance.now() - t0) }, 'zookeeper: full listing');
  }

  private async listDirty(): Promise<void> {
    const paths = [...this.dirty];
    this.dirty.clear();
    try {
      await mapLimit(paths, this.o.concurrency ?? 32, async (p) => {
        const list = await this.listProviders(p);
        if (list.length) this.providers.set(p, list); else this.providers.delete(p);
      });
    } catch (err) {
      for (const p of paths) this.dirty.add(p); // not listed: next pass tries again
      throw new Error(`zookeeper: listing ${describe(paths[0] ?? '')} and ${paths.length - 1} more failed: ${errorMessage(err)}`);
    }
  }
}
