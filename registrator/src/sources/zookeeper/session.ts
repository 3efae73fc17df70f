// One ZooKeeper session that outlives expiry: node-zookeeper-client closes
// itself for good when its session expires (the client is dead from then on),
// queues calls without a deadline while disconnected, and may keep retrying a
// session the server has long dropped, or wait for ever for the answer to a
// connect a starting server accepted. This watchdog owns the client: a connect
// left unanswered is dropped and tried again on the same session
// (kickUnansweredConnect); on expiry, or when not connected for longer than
// the session timeout, it throws
// the client away and opens a new session; every call has a deadline, and a
// call (or the watchdog's own probe every third of the session timeout) left
// unanswered while the client claims to be connected also means a new session:
// measured here, after its session was taken over and closed, the client went
// back to SYNC_CONNECTED and never answered again. The
// owners (source, sink) hear `session` (a new session: re-list, re-create),
// `connected` (same session back) and `disconnected`.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import zookeeper from 'node-zookeeper-client';
import { GantryError, errorMessage, redactUrl, type Logger } from '@gantry/core';

export interface ZkSessionOptions {
  /** host:port,host:port[/chroot] */
  connect: string;
  sessionTimeoutMs?: number;
  /** deadline of one call (default: the session timeout) */
  callTimeoutMs?: number;
  log: Logger;
}

export type Watcher = (event: zookeeper.Event) => void;

export interface ZkStat { ephemeralOwner: string; version: number; numChildren: number }

const code = (err: unknown): number | undefined => (err && typeof err === 'object' && 'getCode' in err && typeof err.getCode === 'function' ? (err.getCode as () => number)() : undefined);
export const isNoNode = (err: unknown): boolean => code(err) === zookeeper.Exception.NO_NODE;
export const isNodeExists = (err: unknown): boolean => code(err) === zookeeper.Exception.NODE_EXISTS;
export const isNotEmpty = (err: unknown): boolean => code(err) === zookeeper.Exception.NOT_EMPTY;
export const isBadVersion = (err: unknown): boolean => code(err) === zookeeper.Exception.BAD_VERSION;

/**
 * node-zookeeper-client clears its connect timeout once TCP connects, then waits
 * for ever for the answer to its connect request; a ZooKeeper still loading its
 * database after a restart accepts the connection and may never answer it
 * (its log: "ZooKeeperServer not running"). Called on a timer while not
 * connected: a socket that was already connected and unanswered at the last
 * call is dropped, and the client connects again with the same session and
 * the same watches. Returns whether it dropped one; a socket still connecting
 * is left to the client's own connect timeout. It reads the client's private
 * `connectionManager.socket` (node-zookeeper-client 1.1 has no public way);
 * should that move, it drops nothing and the session-timeout path above still
 * opens a new session.
 */
export function kickUnansweredConnect(c: zookeeper.Client): boolean {
  const socket = (c as unknown as { connectionManager?: { socket?: Socket } }).connectionManager?.socket;
  if (!socket || socket.destroyed || socket.connecting) return false;
  if (seenUnanswered.get(c) !== socket) {
    seenUnanswered.set(c, socket);
    return false;
  }
  socket.destroy();
  return true;
}
const seenUnanswered = new WeakMap<zookeeper.Client, Socket>();

/** events: 'session' (generation), 'connected', 'disconnected', 'expired' */
export class ZkSession extends EventEmitter {
  private readonly o: ZkSessionOptions;
  private client: zookeeper.Client | undefined;
  private gen = 0;
  private up = false;
  private closed = false;
  private staleTimer: NodeJS.Timeout | undefined;
  private kickTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private firstSession: Promise<void> | undefined;
  /** new sessions opened because the old one expired or went stale (for metrics and tests) */
  renewals = 0;

  constructor(o: ZkSessionOptions) {
    super();
    this.o = o;
  }

  get timeoutMs(): number { return this.o.sessionTimeoutMs ?? 10_000; }
  /** changes with every new session */
  get generation(): number { return this.gen; }
  get connected(): boolean { return this.up; }
  /** the current session's id, as ZooKeeper's ephemeralOwner shows it (16 hex digits) */
  get sessionId(): string { return this.client ? this.client.getSessionId().toString('hex') : ''; }
  get sessionPassword(): Buffer { return this.client ? this.client.getSessionPassword() : Buffer.alloc(0); }
  /** the connect string without any credentials, for logs */
  get where(): string { return redactUrl(this.o.connect); }

  /** Opens the first session; resolves once connected. */
  start(signal?: AbortSignal): Promise<void> {
    this.firstSession ??= new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { this.close(); reject(new GantryError('E_ABORTED', 'aborted before ZooKeeper answered')); };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.once('session', () => { signal?.removeEventListener('abort', onAbort); resolve(); });
      this.open();
    });
    this.probeTimer ??= setInterval(() => this.probe(), Math.max(200, Math.floor(this.timeoutMs / 3)));
    this.probeTimer.unref();
    return this.firstSession;
  }

  private probing = false;
  /** a cheap read with a deadline of half the session timeout; a wedged client is replaced by call() */
  private probe(): void {
    if (!this.up || this.probing || this.closed) return;
    this.probing = true;
    this.call('exists', '/', (c, cb) => c.exists('/', cb), Math.max(500, Math.floor(this.timeoutMs / 2)))
      .catch(() => undefined)
      .finally(() => { this.probing = false; });
  }

  private open(): void {
    if (this.closed) return;
    const gen = ++this.gen;
    const c = zookeeper.createClient(this.o.connect, { sessionTimeout: this.timeoutMs, spinDelay: 200, retries: 0 });
    this.client = c;
    let established = false;
    c.on('state', (s: zookeeper.State) => {
      if (gen !== this.gen) return; // an old client's last words
      if (s === zookeeper.State.SYNC_CONNECTED || s === zookeeper.State.CONNECTED_READ_ONLY) {
        this.up = true;
        clearTimeout(this.staleTimer);
        clearInterval(this.kickTimer);
        if (!established) {
          established = true;
          this.o.log.info({ zookeeper: this.where, session: this.sessionId, generation: gen }, 'zookeeper session established');
          this.emit('session', gen);
        } else {
          this.o.log.info({ zookeeper: this.where, session: this.sessionId }, 'zookeeper reconnected (same session)');
        }
        this.emit('connected');
      } else if (s === zookeeper.State.DISCONNECTED) {
        this.up = false;
        this.o.log.warn({ zookeeper: this.where, session: this.sessionId }, 'zookeeper disconnected');
        this.emit('disconnected');
        // the server drops the session after its timeout; a client still trying it past that is stale
        this.armStale(gen, 'disconnected longer than the session timeout');
        this.armKick(gen);
      } else if (s === zookeeper.State.EXPIRED) {
        this.up = false;
        this.emit('expired');
        this.renew('session expired');
      } else if (s === zookeeper.State.AUTH_FAILED) {
        this.o.log.error({ zookeeper: this.where }, 'zookeeper authentication failed');
      }
    });
    // a server accepting the connection while it is still loading may never answer it; the
    // client then waits in CONNECTING for ever (seen after a ZooKeeper restart): the kick
    // tries the same session again, and past the session timeout a new one is opened
    this.armStale(gen, 'no session within the session timeout');
    this.armKick(gen);
    c.connect();
  }

  /** how often a connect left unanswered is dropped and tried again (same session) */
  private get kickMs(): number { return Math.min(3000, Math.max(1000, Math.floor(this.timeoutMs / 4))); }

  private armKick(gen: number): void {
    clearInterval(this.kickTimer);
    this.kickTimer = setInterval(() => {
      if (gen !== this.gen || this.up || this.closed) { clearInterval(this.kickTimer); return; }
      const c = this.client;
      if (c && kickUnansweredConnect(c)) this.o.log.info({ zookeeper: this.where, session: this.sessionId }, 'zookeeper: connect request unanswered, trying again');
    }, this.kickMs);
    this.kickTimer.unref();
  }

  private armStale(gen: number, why: string): void {
    clearTimeout(this.staleTimer);
    this.staleTimer = setTimeout(() => {
      if (gen === this.gen && !this.up) this.renew(why);
    }, this.timeoutMs + 1000);
    this.staleTimer.unref();
  }

  private renew(why: string): void {
    if (this.closed) return;
    this.renewals++;
    this.up = false;
    this.o.log.warn({ zookeeper: this.where, session: this.sessionId, reason: why }, 'zookeeper: opening a new session');
    const old = this.client;
    this.client = undefined;
    try { old?.close(); } catch { /* already closed */ }
    this.open();
  }

  close(): void {
    this.closed = true;
    this.up = false;
    clearTimeout(this.staleTimer);
    clearInterval(this.kickTimer);
    clearInterval(this.probeTimer);
    try { this.client?.close(); } catch { /* already closed */ }
  }

  /** A call with a deadline; rejects at once when there is no client. */
  private call<T>(what: string, path: string, fn: (c: zookeeper.Client, cb: (err: unknown, v: T) => void) => void, timeoutMs?: number): Promise<T> {
    const c = this.client;
    if (!c || this.closed) return Promise.reject(new GantryError('E_ZK_CLOSED', `zookeeper ${what} ${path}: no session`));
    const ms = timeoutMs ?? this.o.callTimeoutMs ?? this.timeoutMs;
    const gen = this.gen;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (gen === this.gen && this.up) this.renew(`${what} got no answer in ${ms} ms while connected`);
        reject(new GantryError('E_ZK_TIMEOUT', `zookeeper ${what} ${path}: no answer in ${ms} ms`));
      }, ms);
      fn(c, (err, v) => {
        clearTimeout(timer);
        if (err) reject(err instanceof Error ? Object.assign(err, { message: `zookeeper ${what} ${path}: ${errorMessage(err)}` }) : new Error(`zookeeper ${what} ${path}: ${JSON.stringify(err)}`));
        else resolve(v);
      });
    });
  }

  /** children of `path`, or undefined when it does not exist */
  async children(path: string, watcher?: Watcher): Promise<string[] | undefined> {
    try {
      return await this.call<string[]>('getChildren', path, (c, cb) => (watcher ? c.getChildren(path, watcher, cb) : c.getChildren(path, cb)));
    } catch (err) {
      if (isNoNode(err)) return undefined;
      throw err;
    }
  }

  /** the node's stat, or undefined when it does not exist (a watcher then fires on its creation) */
  async exists(path: string, watcher?: Watcher): Promise<ZkStat | undefined> {
    const stat = await this.call<zookeeper.Stat | null>('exists', path, (c, cb) => (watcher ? c.exists(path, watcher, cb) : c.exists(path, cb)));
    return stat ? { ephemeralOwner: stat.ephemeralOwner.toString('hex'), version: stat.version, numChildren: stat.numChildren } : undefined;
  }

  async data(path: string, watcher?: Watcher): Promise<Buffer | undefined> {
    try {
      return await this.call<Buffer>('getData', path, (c, cb) => (watcher ? c.getData(path, watcher, cb) : c.getData(path, cb)));
    } catch (err) {
      if (isNoNode(err)) return undefined;
      throw err;
    }
  }

  create(path: string, data: Buffer, mode: 'ephemeral' | 'persistent'): Promise<string> {
    const m = mode === 'ephemeral' ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT;
    return this.call<string>('create', path, (c, cb) => c.create(path, data, m, cb));
  }

  /** persistent parents of a node (an existing one is fine) */
  mkdirp(path: string): Promise<string> {
    return this.call<string>('mkdirp', path, (c, cb) => c.mkdirp(path, cb));
  }

  /** deletes `path` (at `version`, -1 for any); a node already gone is fine */
  async remove(path: string, version = -1): Promise<void> {
    try {
      await this.call<void>('delete', path, (c, cb) => c.remove(path, version, (err) => cb(err, undefined)));
    } catch (err) {
      if (!isNoNode(err)) throw err;
    }
  }
}
