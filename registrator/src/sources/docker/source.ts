// The Docker source: the containers of one engine, as instances. The desired
// set is computed from a list + inspect (inspections cached until an event
// about that container); the event stream only says "look again", and it is
// re-opened with backoff whenever it closes (the process never exits for it).
// An inspection that fails for any reason but 404 says nothing about the
// container: its last known state stays (so it stays registered) and it is
// inspected again, backing off. A re-opened stream never empties the cache
// (a snapshot under way when it re-opens must not come out partial, which
// would deregister everything it had not reached): every container is
// re-inspected on the next full list instead.
import { constants } from 'node:os';
import type { ContainerInspectInfo } from 'dockerode';
import { isGone, type DockerClient } from './client.ts';
import { Backoff, sleep, errorMessage, mapLimit, escapeLogField, type Logger, type ServiceInstance } from '@gantry/core';
import { containerInstances, type ContainerResult, type DockerSyncOptions, type Problem, type Rewritten } from './container.ts';
import { ChangeSignal } from '../../changes.ts';

export interface DockerSourceOptions extends DockerSyncOptions {
  docker: DockerClient;
  log: Logger;
  onProblem?: (p: Problem) => void;
  onStreamRestart?: () => void;
  /** the event stream is open again after a break: a full pass is due */
  onReconnected?: () => void;
  /** a name, ID or meta key that escaping changed (logged here at warn) */
  onEscaped?: (c: Rewritten) => void;
  /** inspect calls at once (default 16) */
  concurrency?: number;
}

// not `stop` (it comes after `die`): it would cost a pass and an inspect that change nothing,
// and the `die` right behind would wait for them. `kill` only counts when it is the
// container's stop signal (see `stopping`); any other signal (a SIGHUP to reload) is skipped.
const EVENTS = ['start', 'die', 'pause', 'unpause', 'health_status', 'destroy', 'rename', 'restart', 'update', 'oom', 'kill'];

/** How long a container sent its stop signal stays out of the desired set while it still runs. */
export const STOPPING_MAX_MS = 60_000;

/** Whether `signal` (a kill event's attribute: a number, or a name) is the stop signal `stopSignal` (Config.StopSignal, default SIGTERM), or SIGKILL. */
export function isStopSignal(signal: string | undefined, stopSignal: string | undefined): boolean {
  const num = (x: string): number => {
    if (/^\d+$/.test(x)) return Number(x);
    const name = x.toUpperCase();
    return (constants.signals as Record<string, number>)[name.startsWith('SIG') ? name : `SIG${name}`] ?? NaN;
  };
  if (signal === undefined) return false;
  const sig = num(signal);
  return sig === constants.signals.SIGKILL || sig === num(stopSignal || 'SIGTERM');
}

export class DockerSource {
  readonly kind = 'docker' as const;
  private readonly changed = new ChangeSignal();
  private readonly o: DockerSourceOptions;
  private readonly cache = new Map<string, ContainerInspectInfo>();
  /** what each inspection stands for, computed once an inspection */
  private readonly results = new WeakMap<ContainerInspectInfo, ContainerResult>();
  private readonly reported = new Map<string, string>();
  /** containers an event named since the last snapshot: inspected again, no full list needed */
  private touched = new Set<string>();
  /** the containers events had named when the last snapshot was taken */
  private named = new Set<string>();
  private needList = true;
  /** containers a `die` event named that need no inspection to know they are gone */
  private died = new Set<string>();
  /**
   * Containers sent their stop signal (`docker stop`, a `kill` event with their
   * StopSignal) that still run: left out of the desired set, so their instances are
   * deregistered — and leave the load balancers — while the container finishes
   * what it serves, before it dies (draining). Until their `die`, a `start`, or
   * STOPPING_MAX_MS (a container that outlived the signal is registered again).
   */
  private readonly stopping = new Map<string, NodeJS.Timeout>();
  /** the event stream re-opened: every container is inspected again on the next list */
  private reinspectAll = false;
  /** containers whose last inspection failed (not 404): kept as last known, inspected again */
  private readonly unknown = new Set<string>();
  private readonly retryBackoff = new Backoff({ baseMs: 250, maxMs: 10_000 });
  private retryTimer: NodeJS.Timeout | undefined;
  /** true once the event stream is open (false while reconnecting) */
  connected = false;

  constructor(o: DockerSourceOptions) {
    this.o = o;
  }


  /**
   * The desired instances. A full snapshot lists every container (and inspects
   * the new or changed ones); otherwise only the containers events named since
   * the last one are inspected again, so an event costs the same with 3 or 300
   * containers running.
   */
  async snapshot(opts: { full: boolean } = { full: true }): Promise<ServiceInstance[]> {
    let todo: string[];
    if (opts.full || this.needList) {
      const reinspect = this.reinspectAll;
      this.needList = false;
      this.reinspectAll = false;
      let list;
      try {
        list = await this.o.docker.list(this.o.deregister === 'on-success');
      } catch (err) {
        this.needList = true;
        this.reinspectAll ||= reinspect;
        throw err;
      }
      const ids = new Set(list.map((c) => c.Id));
      for (const id of this.cache.keys()) if (!ids.has(id)) this.cache.delete(id);
      for (const id of this.unknown) if (!ids.has(id)) this.unknown.delete(id);
      todo = list.filter((c) => reinspect || this.touched.has(c.Id) || this.unknown.has(c.Id) || !this.cache.has(c.Id) || this.cache.get(c.Id)!.State.Status !== c.State).map((c) => c.Id);
    } else {
      todo = [...new Set([...this.touched, ...this.unknown])];
    }
    // a container that died (and stays dead: --deregister always, or it exited 0) is
    // gone without asking the engine; it saves an inspect on the way to deregistering
    const died = this.died;
    this.died = new Set();
    if (died.size) {
      todo = todo.filter((id) => {
        if (!died.has(id)) return true;
        this.cache.delete(id);
        this.unknown.delete(id);
        return false;
      });
    }
    this.named = this.touched;
    this.touched = new Set();
    const failed: Array<{ id: string; err: string }> = [];
    await mapLimit(todo, this.o.concurrency ?? 16, async (id) => {
      try {
        const info = await this.o.docker.inspect(id);
        this.unknown.delete(id);
        if (info.State.Running || this.o.deregister === 'on-success') this.cache.set(id, info);
        else this.cache.delete(id);
      } catch (err) {
        if (isGone(err)) {
          this.unknown.delete(id);
          this.cache.delete(id); // gone (destroyed) before we looked
          this.o.log.debug({ container: id.slice(0, 12), err: errorMessage(err) }, 'inspect: container gone');
        } else {
          this.unknown.add(id); // the engine's trouble: keep what we knew, look again
          failed.push({ id, err: errorMessage(err) });
        }
      }
    });
    if (failed.length) {
      const delay = this.retryBackoff.next();
      for (const f of failed.slice(0, 5)) {
        this.o.log.warn({ container: f.id.slice(0, 12), known: this.cache.has(f.id), err: escapeLogField(f.err), retryInMs: delay }, 'inspect failed; keeping the last known state, retrying');
      }
      if (failed.length > 5) this.o.log.warn({ more: failed.length - 5 }, 'inspect failed for more containers');
      this.scheduleRetry(delay);
    } else if (!this.unknown.size) this.retryBackoff.reset();
    const out: ServiceInstance[] = [];
    for (const info of this.cache.values()) {
      if (this.stopping.has(info.Id)) continue;
      // an inspection not taken again since the last pass gives the same instances (the same
      // objects, so the reconciler's spec hashes of them are reused): a pass costs what changed
      let r = this.results.get(info);
      if (!r) {
        r = containerInstances(info, this.o);
        this.results.set(info, r);
        this.report(info.Id, r.problems, r.escaped);
      }
      out.push(...r.instances);
    }
    return out;
  }

  /** Problems and escaped values of one container, logged once until they change. */
  private report(id: string, problems: Problem[], escaped: Rewritten[]): void {
    const key = JSON.stringify([problems, escaped]);
    if ((problems.length || escaped.length) && this.reported.get(id) !== key) {
      for (const p of problems) {
        this.o.log.warn({ container: p.container.slice(0, 12), containerName: escapeLogField(p.name), label: escapeLogField(p.where), port: p.port, reason: escapeLogField(p.reason) }, p.port ? 'bad container metadata: port skipped' : 'bad container metadata');
        this.o.onProblem?.(p);
      }
      for (const e of escaped) {
        this.o.log.warn({ container: e.container.slice(0, 12), containerName: escapeLogField(e.name), label: escapeLogField(e.where), port: e.port, what: e.what, original: escapeLogField(e.original), result: e.result }, `container ${e.what} changed to fit Consul`);
        this.o.onEscaped?.(e);
      }
    }
    if (problems.length || escaped.length) this.reported.set(id, key); else this.reported.delete(id);
  }

  private markStopping(id: string): void {
    this.o.log.info({ container: id.slice(0, 12) }, 'container sent its stop signal: deregistering it while it stops (draining)');
    const timer = setTimeout(() => {
      this.stopping.delete(id);
      this.o.log.warn({ container: id.slice(0, 12), afterMs: STOPPING_MAX_MS }, 'container still running after its stop signal: registered again');
      this.touched.add(id);
      this.changed.poke();
    }, STOPPING_MAX_MS);
    timer.unref();
    this.stopping.set(id, timer);
  }

  private clearStopping(id: string): void {
    clearTimeout(this.stopping.get(id));
    this.stopping.delete(id);
  }

  private scheduleRetry(delay: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.changed.poke(); }, delay);
    this.retryTimer.unref();
  }

  /** An instance is "named by an event" when its container was, before the last snapshot. */
  namedByEvent(instance: ServiceInstance): boolean {
    return this.named.has(instance.origin.ref);
  }

  /** Yields after each container event (coalesced), and after the stream re-opens. */
  async *changes(signal: AbortSignal): AsyncIterable<void> {
    void this.follow(signal);
    yield* this.changed.stream(signal);
  }

  /** Keeps an event stream open; on close or error, re-opens it with backoff. */
  private async follow(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ baseMs: 200, maxMs: 10_000 });
    let first = true;
    while (!signal.aborted) {
      try {
        const stream = await this.o.docker.events({ type: ['container'], event: EVENTS }, signal);
        this.connected = true;
        backoff.reset();
        if (first) {
          // the first listing and this subscription are made at the same time: a container that
          // started between the two sent its events to no one (a make test run lost one that way
          // until the next resync). Now that no event can be missed, list once more.
          this.needList = true;
          this.changed.poke();
        } else {
          this.o.log.info('docker event stream re-opened; resyncing');
          // we may have missed events: list and inspect everything again; the
          // cache stays, so a snapshot under way now still sees every container
          this.needList = true;
          this.reinspectAll = true;
          this.o.onReconnected?.();
          this.changed.poke();
        }
        first = false;
        await new Promise<void>((resolve) => {
          let buf = '';
          const onAbort = (): void => { stream.destroy(); resolve(); };
          signal.addEventListener('abort', onAbort, { once: true });
          stream.on('data', (chunk: Buffer) => {
            buf += chunk.toString('utf8');
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              try {
                const ev = JSON.parse(line) as { id?: string; Action?: string; timeNano?: number; Actor?: { ID?: string; Attributes?: Record<string, string> } };
                const id = ev.id ?? ev.Actor?.ID;
                // lagMs: from the engine's own timestamp of the event to its arrival here
                this.o.log.debug({ container: id?.slice(0, 12), event: ev.Action, lagMs: ev.timeNano ? Math.round(Date.now() - ev.timeNano / 1e6) : undefined }, 'docker event');
                if (id && ev.Action === 'kill') {
                  // only the stop signal of a container we serve: it is about to stop
                  if (!this.cache.has(id) || this.stopping.has(id) || !isStopSignal(ev.Actor?.Attributes?.signal, (this.cache.get(id)!.Config as { StopSignal?: string }).StopSignal)) continue;
                  this.markStopping(id);
                } else if (id) {
                  this.touched.add(id);
                  if (ev.Action === 'die' || ev.Action === 'start' || ev.Action === 'restart' || ev.Action === 'destroy') this.clearStopping(id);
                  if (ev.Action === 'die' && (this.o.deregister === 'always' || ev.Actor?.Attributes?.exitCode === '0')) this.died.add(id);
                  else if (ev.Action === 'start' || ev.Action === 'restart' || ev.Action === 'unpause') this.died.delete(id);
                } else this.needList = true;
              } catch {
                this.needList = true; // an odd line: look at everything
              }
              this.changed.poke();
            }
          });
          const done = (): void => { signal.removeEventListener('abort', onAbort); resolve(); };
          stream.once('end', done);
          stream.once('close', done);
          stream.once('error', done);
        });
        if (signal.aborted) return;
        this.connected = false;
        this.o.log.warn('docker event stream closed; re-opening');
        this.o.onStreamRestart?.();
      } catch (err) {
        this.connected = false;
        if (signal.aborted) return;
        const delay = backoff.next();
        this.o.log.warn({ err: errorMessage(err), retryInMs: delay }, 'docker unreachable; retrying');
        this.o.onStreamRestart?.();
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }
}
