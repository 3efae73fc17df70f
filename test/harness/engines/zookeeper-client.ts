// A plain node-zookeeper-client for tests, independent of Gantry's session
// watchdog: plays a Dubbo provider (writes provider nodes) or a consumer (lists them).
import zookeeper from 'node-zookeeper-client';
import { kickUnansweredConnect } from '../../../registrator/src/sources/zookeeper/session.ts';

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(JSON.stringify(err)));

export interface TestZkClient {
  readonly raw: zookeeper.Client;
  mkdirp(path: string): Promise<void>;
  create(path: string, mode?: 'ephemeral' | 'persistent', data?: string): Promise<void>;
  remove(path: string): Promise<void>;
  children(path: string, watcher?: (e: zookeeper.Event) => void): Promise<string[]>;
  stat(path: string): Promise<zookeeper.Stat | null>;
  close(): void;
}

export async function connectZk(connectString: string, opts: { sessionTimeout?: number; sessionId?: Buffer; sessionPassword?: Buffer } = {}): Promise<TestZkClient> {
  const c = zookeeper.createClient(connectString, { sessionTimeout: opts.sessionTimeout ?? 10_000, retries: 1, ...(opts.sessionId ? { sessionId: opts.sessionId, sessionPassword: opts.sessionPassword } : {}) });
  // like a Dubbo provider's Curator, it reconnects with its session after a ZooKeeper
  // restart: a connect the starting server accepted and never answered is tried again
  let up = false;
  const kick = setInterval(() => { if (!up) kickUnansweredConnect(c); }, 1000);
  kick.unref();
  c.on('state', (s: zookeeper.State) => { up = s === zookeeper.State.SYNC_CONNECTED; });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { clearInterval(kick); c.close(); reject(new Error(`no ZooKeeper session at ${connectString} in 20 s`)); }, 20_000);
    c.once('connected', () => { clearTimeout(timer); resolve(); });
    c.connect();
  });
  // every call has a deadline: a test fails loudly instead of waiting for ever
  const cb = <T>(fn: (done: (err: unknown, v: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ZooKeeper at ${connectString} did not answer in 30 s`)), 30_000);
      fn((err, v) => { clearTimeout(timer); if (err) reject(toError(err)); else resolve(v); });
    });
  return {
    raw: c,
    mkdirp: async (path) => { await cb<string>((d) => c.mkdirp(path, d)); },
    create: async (path, mode = 'ephemeral', data = '') => {
      await cb<string>((d) => c.create(path, Buffer.from(data), mode === 'ephemeral' ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT, d));
    },
    remove: async (path) => { await cb<void>((d) => c.remove(path, -1, (err) => d(err, undefined))); },
    children: (path, watcher) => cb<string[]>((d) => (watcher ? c.getChildren(path, watcher, d) : c.getChildren(path, d))),
    stat: (path) => cb<zookeeper.Stat | null>((d) => c.exists(path, d)),
    close: () => { clearInterval(kick); c.close(); },
  };
}

/**
 * Expires a session for real, the way ZooKeeper's own tests do: a second client
 * connects with the session's id and password (the server moves the session to
 * it) and closes it. The owner's client may grab the session back before the
 * close arrives (then nothing expired): tried again until `renewed()` says the
 * owner is on a new session. Returns the attempts it took.
 */
export async function expireSession(connectString: string, id: Buffer, password: Buffer, renewed: () => boolean, attempts = 5): Promise<number> {
  for (let i = 1; i <= attempts; i++) {
    const thief = await connectZk(connectString, { sessionTimeout: 4000, sessionId: id, sessionPassword: password });
    thief.close();
    const end = Date.now() + 8000;
    while (Date.now() < end) {
      if (renewed()) return i;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`session ${id.toString('hex')} did not expire after ${attempts} attempts`);
}
