// ZooKeeper → Consul: every Dubbo provider under `<root>/<interface>/providers`
// (each root, each interface, including ones created later) is a desired
// instance. Child watches mark what to list again; a full listing (at start,
// every resync, after every reconnect and new session) reads everything and
// replaces the known set only once it is complete: a listing that fails throws,
// so the reconciler writes nothing and nothing is deregistered from what a
// half-done listing missed.
// With the application layout (Dubbo 3, Spring Cloud Zookeeper, Curator's
// ServiceDiscovery: `<appRoot>/<app>/<instance>` holding a ServiceInstance JSON)
// every app under each app root is listed too, and every instance node's data
// read once and kept until a data watch says it changed.
import { describe, escapeLogField, errorMessage, mapLimit, type Logger, type OwnerId, type ServiceInstance } from '@gantry/core';
import type { Source } from '../../reconciler.ts';
import { ChangeSignal } from '../../changes.ts';
import { parseProviderNode } from './dubbo-url.ts';
import { providerToInstance, type NameRule, type ProviderResult } from './mapping.ts';
import { appInstanceToInstance } from './app-instance.ts';
import type { ZkSession, Watcher } from './session.ts';

export interface ZkSourceOptions {
  session: ZkSession;
  /** Dubbo 2 interface-layout roots (`<root>/<interface>/providers`), default ['/dubbo']; none when only the application layout is imported */
  roots: string[];
  /** application-layout roots (`<root>/<app>/<instance>`, Curator ServiceInstance JSON), e.g. ['/services']; default none */
  appRoots?: string[];
  owner: OwnerId;
  nameRule: NameRule;
  log: Logger;
  /** how many ZooKeeper calls at once during a listing (default 32) */
  concurrency?: number;
  /** an unparseable or invalid node (counted and audited): its providers path, the node (escaped, cut) and why */
  onProblem?: (path: string, node: string, reason: string) => void;
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
  /** providers path → node name → the instance (or why not) it made, as of the last listing */
  private readonly parsed = new Map<string, Map<string, ProviderResult>>();
  /** application layout: instance node → its data, while its data watch is armed in this session */
  private readonly appData = new Map<string, Buffer | undefined>();

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
    if (this.watchGen !== s.generation) { this.watched.clear(); this.appData.clear(); this.watchGen = s.generation; }
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

  /** `path`'s children, watched (a change marks `dirty`); undefined while it does not exist, its creation watched. */
  private async watchedChildren(path: string, dirty: Set<string>): Promise<string[] | undefined> {
    const s = this.o.session;
    const w = this.watcher(`c:${path}`, dirty, path);
    let names: string[] | undefined;
    try {
      names = await s.children(path, w);
    } catch (err) {
      if (w) this.watched.delete(`c:${path}`);
      throw err;
    }
    if (names !== undefined) return names;
    if (w) this.watched.delete(`c:${path}`);
    const ew = this.watcher(`e:${path}`, dirty, path);
    const stat = await s.exists(path, ew).catch((err: unknown) => { if (ew) this.watched.delete(`e:${path}`); throw err; });
    return stat ? this.watchedChildren(path, dirty) : undefined; // created in between
  }

  /** Lists one providers path (watching it, or its creation: an interface with consumers only, or being created). */
  private async listProviders(path: string): Promise<ServiceInstance[]> {
    const names = await this.watchedChildren(path, this.dirty);
    if (names === undefined) return [];
    const out: ServiceInstance[] = [];
    const problems: Array<{ where: string; reason: string }> = [];
    // a node name always makes the same result: only names new since the last listing are parsed
    const before = this.parsed.get(path);
    const now = new Map<string, ProviderResult>();
    for (const name of names) {
      let r = before?.get(name);
      if (!r) {
        const parsed = parseProviderNode(name);
        r = parsed.ok ? providerToInstance(parsed.url, { owner: this.o.owner, path, nameRule: this.o.nameRule }) : { kind: 'error', reason: parsed.reason };
      }
      now.set(name, r);
      if (r.kind === 'instance') out.push(r.instance);
      else if (r.kind === 'skip') this.o.onSkipped?.(r.reason);
      else problems.push({ where: `${path}/${escapeLogField(name, 120)}`, reason: r.reason });
    }
    if (now.size) this.parsed.set(path, now); else this.parsed.delete(path);
    this.reportProblems(path, problems);
    return out;
  }

  /** logged, counted and audited once per distinct set of problems of a path */
  private reportProblems(path: string, problems: Array<{ where: string; reason: string }>, msg = 'zookeeper: provider node skipped'): void {
    const key = problems.map((p) => `${p.where}: ${p.reason}`).join('\n');
    if (key !== (this.reported.get(path) ?? '')) {
      for (const p of problems) {
        this.o.log.warn({ path: escapeLogField(path), problem: `${p.where}: ${p.reason}` }, msg);
        this.o.onProblem?.(path, p.where, p.reason);
      }
    }
    if (problems.length) this.reported.set(path, key); else this.reported.delete(path);
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
    for (const root of this.o.roots) for (const iface of await this.listRoot(root)) paths.push(join(root, iface, 'providers'));
    const apps: string[] = [];
    for (const root of this.o.appRoots ?? []) for (const app of await this.listRoot(root)) apps.push(join(root, app));
    const next = new Map<string, ServiceInstance[]>();
    await mapLimit([...paths, ...apps], this.o.concurrency ?? 32, async (p) => {
      const list = await this.listPath(p);
      if (list.length) next.set(p, list);
    });
    if (gen !== s.generation) throw new Error('zookeeper session changed during the listing; listing again');
    const listed = new Set(paths);
    for (const p of this.parsed.keys()) if (!listed.has(p)) this.parsed.delete(p);
    this.providers = next;
    this.listedGen = gen;
    this.o.log.debug({ interfaces: paths.length, providers: [...next.values()].reduce((n, l) => n + l.length, 0), ms: Math.round(performance.now() - t0) }, 'zookeeper: full listing');
  }

  /** A root's children (watched), or none while it does not exist (its creation watched). */
  private async listRoot(root: string): Promise<string[]> {
    return (await this.watchedChildren(root, this.dirtyRoots)) ?? [];
  }

  private listPath(p: string): Promise<ServiceInstance[]> {
    // <appRoot>/<app> is one level below its root, <root>/<interface>/providers two
    return (this.o.appRoots ?? []).some((r) => p.startsWith(`${r}/`) && !p.slice(r.length + 1).includes('/')) ? this.listApp(p) : this.listProviders(p);
  }

  /** Lists one app's instances (watched), reading the data of those not read since their last change. */
  private async listApp(path: string): Promise<ServiceInstance[]> {
    const s = this.o.session;
    const names = await this.watchedChildren(path, this.dirty);
    if (names === undefined) return []; // the app is gone
    const app = path.slice(path.lastIndexOf('/') + 1);
    for (const k of this.appData.keys()) if (k.startsWith(`${path}/`) && !names.includes(k.slice(path.length + 1))) this.appData.delete(k);
    const datas = await mapLimit(names, 8, async (name): Promise<Buffer | undefined> => {
      const node = `${path}/${name}`;
      if (this.appData.has(node)) return this.appData.get(node);
      const dw = this.watcher(`d:${node}`, this.dirty, path);
      // the data watch marks the app dirty and drops the cached data
      const wrapped = dw ? (e: Parameters<NonNullable<typeof dw>>[0]): void => { this.appData.delete(node); dw(e); } : undefined;
      let data: Buffer | undefined;
      try {
        data = await s.data(node, wrapped);
      } catch (err) {
        if (dw) this.watched.delete(`d:${node}`);
        throw err;
      }
      if (data === undefined) { if (dw) this.watched.delete(`d:${node}`); return undefined; } // removed in between: the child watch fires
      if (dw) this.appData.set(node, data);
      return data;
    });
    const out: ServiceInstance[] = [];
    const problems: Array<{ where: string; reason: string }> = [];
    names.forEach((name, i) => {
      const where = `${path}/${escapeLogField(name, 120)}`;
      const data = datas[i];
      if (data === undefined) return; // removed in between
      const r = appInstanceToInstance(data, { owner: this.o.owner, appPath: path, app, node: name });
      if (r.kind === 'instance') {
        out.push(r.instance);
        for (const d of r.dropped) problems.push({ where, reason: `${d} (dropped; the instance is imported)` });
      } else if (r.kind === 'skip') this.o.onSkipped?.(r.reason);
      else problems.push({ where, reason: r.reason });
    });
    this.reportProblems(path, problems, 'zookeeper: application instance node refused');
    return out;
  }

  private async listDirty(): Promise<void> {
    const paths = [...this.dirty];
    this.dirty.clear();
    try {
      await mapLimit(paths, this.o.concurrency ?? 32, async (p) => {
        const list = await this.listPath(p);
        if (list.length) this.providers.set(p, list); else this.providers.delete(p);
      });
    } catch (err) {
      for (const p of paths) this.dirty.add(p); // not listed: next pass tries again
      throw new Error(`zookeeper: listing ${describe(paths[0] ?? '')} and ${paths.length - 1} more failed: ${errorMessage(err)}`);
    }
  }
}
