// The Docker source: the containers of one engine, as instances. The desired
// set is computed from a list + inspect (inspections cached until an event
// about that container); the event stream only says "look again", and it is
// re-opened with backoff whenever it closes (the process never exits for it).
import type { ContainerInspectInfo } from 'dockerode';
import type { DockerClient } from './client.ts';
import { Backoff, sleep, errorMessage, escapeLogField, type Logger, type ServiceInstance } from '@gantry/core';
import { containerInstances, type DockerSyncOptions, type Problem } from './container.ts';
import { ChangeSignal } from '../../changes.ts';

export interface DockerSourceOptions extends DockerSyncOptions {
  docker: DockerClient;
  log: Logger;
  onProblem?: (p: Problem) => void;
  onStreamRestart?: () => void;
  /** the event stream is open again after a break: a full pass is due */
  onReconnected?: () => void;
  /** inspect calls at once (default 16) */
  concurrency?: number;
}

const EVENTS = ['start', 'die', 'stop', 'kill', 'pause', 'unpause', 'health_status', 'destroy', 'rename', 'restart', 'update', 'oom'];

export class DockerSource {
  readonly kind = 'docker' as const;
  private readonly changed = new ChangeSignal();
  private readonly o: DockerSourceOptions;
  private readonly cache = new Map<string, ContainerInspectInfo>();
  private readonly reported = new Map<string, string>();
  /** containers an event named since the last snapshot: inspected again, no full list needed */
  private touched = new Set<string>();
  /** the containers events had named when the last snapshot was taken */
  private named = new Set<string>();
  private needList = true;
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
      const list = await this.o.docker.list(this.o.deregister === 'on-success');
      const ids = new Set(list.map((c) => c.Id));
      for (const id of this.cache.keys()) if (!ids.has(id)) this.cache.delete(id);
      todo = list.filter((c) => this.touched.has(c.Id) || !this.cache.has(c.Id) || this.cache.get(c.Id)!.State.Status !== c.State).map((c) => c.Id);
      this.needList = false;
    } else {
      todo = [...this.touched];
    }
    this.named = this.touched;
    this.touched = new Set();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const id = todo[next++]!;
        try {
          const info = await this.o.docker.inspect(id);
          if (info.State.Running || this.o.deregister === 'on-success') this.cache.set(id, info);
          else this.cache.delete(id);
        } catch (err) {
          this.cache.delete(id); // gone (destroyed) before we looked
          this.o.log.debug({ container: id, err: errorMessage(err) }, 'inspect failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency ?? 16, todo.length) }, worker));
    const out: ServiceInstance[] = [];
    for (const info of this.cache.values()) {
      const r = containerInstances(info, this.o);
      out.push(...r.instances);
      const key = JSON.stringify(r.problems);
      if (r.problems.length && this.reported.get(info.Id) !== key) {
        for (const p of r.problems) {
          this.o.log.warn({ container: p.container.slice(0, 12), containerName: p.name, label: p.where, port: p.port, reason: escapeLogField(p.reason) }, p.port ? 'bad container metadata: port skipped' : 'bad container metadata');
          this.o.onProblem?.(p);
        }
      }
      if (r.problems.length) this.reported.set(info.Id, key); else this.reported.delete(info.Id);
    }
    return out;
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
        if (!first) {
          this.o.log.info('docker event stream re-opened; resyncing');
          this.cache.clear(); // we may have missed events
          this.needList = true;
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
                const ev = JSON.parse(line) as { id?: string; Action?: string; Actor?: { ID?: string } };
                const id = ev.id ?? ev.Actor?.ID;
                this.o.log.debug({ container: id?.slice(0, 12), event: ev.Action }, 'docker event');
                if (id) this.touched.add(id);
                else this.needList = true;
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
