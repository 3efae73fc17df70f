// Consul → ZooKeeper, the ZooKeeper side: each exported instance is an
// ephemeral provider node `<root>/<interface>/providers/<URL>` in Dubbo's own
// format (written with the same module the import parses with), owned by the
// bridge's session. Persistent parents are created as needed and never deleted.
// The URL carries the origin marker (gantry.owner: the import skips such nodes)
// plus the instance id and spec hash, so `owned()` reads what we wrote back
// from ZooKeeper itself: after a new session, a restart or a leader change,
// whatever is missing is created again, and a node left by an older session is
// deleted and created under ours (a NodeExists is never taken as success).
import { META, specHash, asInstanceId, asServiceName, errorMessage, mapLimit, type ServiceInstance, type OwnerId, type Logger } from '@gantry/core';
import type { Sink } from '../reconciler.ts';
import { ChangeSignal } from '../changes.ts';
import { formatProviderNode, parseProviderNode, interfaceOf } from '../sources/zookeeper/dubbo-url.ts';
import { ORIGIN_PARAM } from '../sources/zookeeper/mapping.ts';
import { isNodeExists, isNoNode, type ZkSession } from '../sources/zookeeper/session.ts';

export interface ZkSinkOptions {
  session: ZkSession;
  /** where provider nodes go, e.g. /dubbo */
  root: string;
  log: Logger;
  /** Dubbo's protocol version written as `dubbo=` (default 2.0.2, what 2.7 writes) */
  dubboVersion?: string;
}

const ID_PARAM = 'gantry.id';
const SPEC_PARAM = 'gantry.spec';
/** the spec a node gets in `owned()` when an older session wrote it: never equal to a desired spec, so it is written again */
const STALE = 'stale-session';

export class ZooKeeperSink implements Sink {
  private readonly o: ZkSinkOptions;
  /** node path → the session generation that created it */
  private readonly created = new Map<string, number>();
  /** instance id → the timestamp its node carries (kept while this process runs, so re-creating gives the same node name) */
  private readonly since = new Map<string, number>();
  private readonly watchedPaths = new Set<string>();
  private watchGen = -1;
  private readonly signal = new ChangeSignal();
  /** nodes of another (older) session found at re-registration and replaced */
  replaced = 0;
  /** interfaces we wrote into; between full scans (a new session, or a minute) only these are read back */
  private readonly ifaces = new Set<string>();
  private scannedGen = -1;
  private scannedAt = 0;
  constructor(o: ZkSinkOptions) {
    this.o = o;
    o.session.on('session', () => this.signal.poke());
  }

  /** yields on a new session and when a providers list we wrote into changed (a node deleted by someone else) */
  changes(signal: AbortSignal): AsyncIterable<void> {
    return this.signal.stream(signal);
  }

  private pathOf(i: ServiceInstance, owner: string): string {
    const iface = i.meta['dubbo-interface'] ?? '';
    const ts = this.since.get(i.id) ?? Date.now();
    this.since.set(i.id, ts);
    const params = new Map<string, string>([
      ['anyhost', 'true'], ['application', i.meta['dubbo-application'] ?? i.name], ['dubbo', this.o.dubboVersion ?? '2.0.2'],
      [ORIGIN_PARAM, owner], [ID_PARAM, i.id], [SPEC_PARAM, specHash(i)], ['interface', iface], ['side', 'provider'], ['timestamp', String(ts)],
    ]);
    for (const k of ['version', 'group', 'methods'] as const) {
      const v = i.meta[`dubbo-${k}`];
      if (v) params.set(k, v);
    }
    const node = formatProviderNode({ protocol: i.meta['dubbo-protocol'] ?? 'dubbo', host: i.address, port: i.port, path: iface, params });
    return `${this.o.root}/${iface}/providers/${node}`;
  }

  private watch(providers: string): ((e: unknown) => void) | undefined {
    const s = this.o.session;
    if (this.watchGen !== s.generation) { this.watchedPaths.clear(); this.watchGen = s.generation; }
    if (this.watchedPaths.has(providers)) return undefined;
    this.watchedPaths.add(providers);
    const gen = s.generation;
    return () => {
      if (gen !== s.generation) return;
      this.watchedPaths.delete(providers);
      void this.missingOurs(providers, gen);
    };
  }

  /**
   * A providers list we wrote into changed: a full pass only when a node this
   * session created is missing (deleted by someone else). Our own creations fire
   * the same watch; taken for a change, each cost a full pass (every providers
   * list read back, Consul read again) right behind the change it made.
   */
  private async missingOurs(providers: string, gen: number): Promise<void> {
    const s = this.o.session;
    try {
      const names = new Set((await s.children(providers, this.watch(providers))) ?? []);
      const prefix = `${providers}/`;
      for (const [path, g] of this.created) {
        if (g === gen && path.startsWith(prefix) && !names.has(path.slice(prefix.length))) { this.signal.poke(); return; }
      }
    } catch {
      this.watchedPaths.delete(providers); // not re-armed: the full pass lists it again
      this.signal.poke();
    }
  }

  async owned(owner: OwnerId): Promise<ServiceInstance[]> {
    const s = this.o.session;
    const gen = s.generation;
    const scan = gen !== this.scannedGen || Date.now() - this.scannedAt > 60_000;
    const ifaces = scan ? ((await s.children(this.o.root)) ?? []) : [...this.ifaces];
    const out: ServiceInstance[] = [];
    await mapLimit(ifaces, 16, async (iface) => {
      {
        const providers = `${this.o.root}/${iface}/providers`;
        const names = (await s.children(providers, this.watch(providers))) ?? [];
        for (const name of names) {
          const p = parseProviderNode(name);
          if (!p.ok || p.url.params.get(ORIGIN_PARAM) !== owner) continue;
          const id = p.url.params.get(ID_PARAM);
          if (!id) continue;
          const path = `${providers}/${name}`;
          this.ifaces.add(interfaceOf(p.url));
          const ours = this.created.get(path) === s.generation;
          out.push({
            id: asInstanceId(id), name: asServiceName(p.url.params.get('application') ?? ''), address: p.url.host, port: p.url.port, tags: [], checks: [],
            meta: { [META.owner]: owner, [META.spec]: ours ? (p.url.params.get(SPEC_PARAM) ?? '') : STALE, 'dubbo-interface': interfaceOf(p.url) },
            origin: { source: 'zookeeper', ref: path },
          });
        }
      }
    });
    if (scan) { this.scannedGen = gen; this.scannedAt = Date.now(); }
    // a node listed twice (an old and a new timestamp): keep one, the reconciler deletes the other through an update
    const byId = new Map<string, ServiceInstance>();
    for (const i of out) {
      const prev = byId.get(i.id);
      if (!prev || prev.meta[META.spec] === STALE) {
        if (prev) await this.o.session.remove(prev.origin.ref);
        byId.set(i.id, i);
      } else await this.o.session.remove(i.origin.ref);
    }
    return [...byId.values()];
  }

  async register(i: ServiceInstance, previous?: ServiceInstance): Promise<void> {
    const s = this.o.session;
    const owner = i.meta[META.owner] ?? '';
    const path = this.pathOf(i, owner);
    const providers = path.slice(0, path.lastIndexOf('/'));
    this.ifaces.add(i.meta['dubbo-interface'] ?? '');
    const gen = s.generation;
    const create = async (): Promise<void> => {
      try {
        await s.create(path, Buffer.alloc(0), 'ephemeral');
      } catch (err) {
        if (!isNoNode(err)) throw err;
        await s.mkdirp(providers); // persistent parents, created once
        await s.create(path, Buffer.alloc(0), 'ephemeral');
      }
    };
    try {
      await create();
    } catch (err) {
      if (!isNodeExists(err)) throw err;
      const stat = await s.exists(path);
      if (stat && stat.ephemeralOwner !== s.sessionId) {
        // Dubbo #5125: the node is an older session's, still there; it vanishes when that session ends — take it over now
        this.o.log.info({ service: i.name, instance: i.id, owner: stat.ephemeralOwner }, 'zookeeper export: provider node of another session replaced');
        await s.remove(path, stat.version);
        this.replaced++;
        await s.create(path, Buffer.alloc(0), 'ephemeral');
      }
    }
    this.created.set(path, gen);
    const w = this.watch(providers);
    if (w) await s.children(providers, w);
    if (previous?.origin.ref && previous.origin.ref !== path) {
      await s.remove(previous.origin.ref);
      this.created.delete(previous.origin.ref);
    }
  }

  async deregister(i: ServiceInstance): Promise<void> {
    const path = i.origin.ref || this.pathOf(i, i.meta[META.owner] ?? '');
    try {
      await this.o.session.remove(path);
    } catch (err) {
      throw new Error(`zookeeper export: could not delete the node of ${i.id}: ${errorMessage(err)}`);
    }
    this.created.delete(path);
    this.since.delete(i.id);
  }
}
