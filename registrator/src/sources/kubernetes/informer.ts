// A Kubernetes informer as client-go writes one: list (paged), then watch from
// the list's resourceVersion with bookmarks; when the watch closes or breaks,
// watch again from the last version seen (after a backoff with full jitter on
// errors); on 410 Gone, list again. The store is replaced whole on each list.
import { Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { Backoff, sleep, errorMessage, type Logger } from '@gantry/core';

export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string };
}

export interface InformerOptions<T extends KubernetesObject> {
  /** for logs and metrics: services, endpointslices, nodes */
  name: string;
  kc: KubeConfig;
  /** one page of the list (limit + continue) */
  list: (cont: string | undefined) => Promise<ListPage<T>>;
  /** the watch path, e.g. /api/v1/services */
  watchPath: string;
  log: Logger;
  /** called after the store changed (a list replaced it, or an event changed it) */
  onChange: (informer: string) => void;
  /** called when a watch expires (410) or a connection breaks, for metrics */
  onRestart?: (informer: string, reason: string) => void;
}

export const objectKey = (o: KubernetesObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

class GoneError extends Error {}

export class Informer<T extends KubernetesObject> {
  readonly store = new Map<string, T>();
  private resourceVersion = '';
  private listedOnce = false;
  private readonly opts: InformerOptions<T>;
  private readonly watch: Watch;
  private readonly firstList: Promise<void>;
  private markListed!: () => void;

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    this.watch = new Watch(opts.kc);
    this.firstList = new Promise((resolve) => { this.markListed = resolve; });
  }

  /** true once the first full list has been applied */
  get synced(): boolean {
    return this.listedOnce;
  }

  /** resolves when the first full list has been applied */
  whenSynced(): Promise<void> {
    return this.firstList;
  }

  /** Runs until the signal aborts; never throws for Kubernetes errors. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ baseMs: 200, maxMs: 5000 });
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        await this.watchOnce(signal);
        backoff.reset(); // a watch that ended cleanly: watch again from where we are
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof GoneError) {
          this.opts.log.info({ informer: this.opts.name }, 'watch expired (410 Gone): listing again');
          this.opts.onRestart?.(this.opts.name, 'gone');
          needList = true;
          continue;
        }
        const delay = backoff.next();
        this.opts.log.warn({ informer: this.opts.name, err: errorMessage(err), retryInMs: delay }, 'kubernetes list/watch failed');
        this.opts.onRestart?.(this.opts.name, 'error');
        // as client-go: re-watch from the last version seen; if that version is
        // gone by then, the watch answers 410 and we list again
        if (!this.resourceVersion) needList = true;
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }

  private async list(): Promise<void> {
    const items = new Map<string, T>();
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.opts.list(cont);
      for (const item of page.items) items.set(objectKey(item), item);
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?._continue || undefined;
    } while (cont);
    this.store.clear();
    for (const [k, v] of items) this.store.set(k, v);
    this.resourceVersion = rv;
    if (!this.listedOnce) {
      this.listedOnce = true;
      this.markListed();
    }
    this.opts.log.debug({ informer: this.opts.name, count: items.size, resourceVersion: rv }, 'listed');
    this.opts.onChange(this.opts.name);
  }

  private watchOnce(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let controller: AbortController | undefined;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        controller?.abort();
        if (err) reject(err instanceof Error ? err : new Error(JSON.stringify(err)));
        else resolve();
      };
      const onAbort = (): void => finish();
      signal.addEventListener('abort', onAbort, { once: true });
      this.watch
        .watch(
          this.opts.watchPath,
          { allowWatchBookmarks: true, resourceVersion: this.resourceVersion, timeoutSeconds: 300 },
          (phase: string, obj: T & { code?: number; metadata?: { resourceVersion?: string } }) => {
            if (settled) return;
            if (phase === 'ERROR') {
              const code = (obj as { code?: number }).code;
              finish(code === 410 ? new GoneError('410 Gone') : new Error(`watch error ${JSON.stringify(obj).slice(0, 200)}`));
              return;
            }
            const rv = obj.metadata?.resourceVersion;
            if (rv) this.resourceVersion = rv;
            if (phase === 'BOOKMARK') return;
            const key = objectKey(obj);
            if (phase === 'DELETED') this.store.delete(key);
            else this.store.set(key, obj);
            this.opts.onChange(this.opts.name);
          },
          (err: unknown) => {
            const status = (err as { statusCode?: number; code?: number } | null)?.statusCode;
            if (status === 410) finish(new GoneError('410 Gone'));
            else finish(err ?? undefined);
          },
        )
        .then((c) => {
          controller = c;
          if (settled) c.abort();
        }, (err: unknown) => finish(err));
    });
  }
}
