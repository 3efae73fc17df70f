// `--static FILE|DIR`: service-definition files watched with inotify (fs.watch
// on each file's directory, so editors that write a new file and rename it are
// seen). A changed file is read whole once it has stopped changing (two reads
// 40 ms apart agree); a file that does not parse keeps what it said before; a
// removed file removes its services. Every problem is logged with file and
// line:column, once per distinct problem.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve, dirname, basename, extname } from 'node:path';
import { errorMessage, escapeLogField, type Logger, type OwnerId, type ServiceInstance } from '@gantry/core';
import type { Source } from '../../reconciler.ts';
import { ChangeSignal } from '../../changes.ts';
import { parseDefinitions, type Problem } from './definitions.ts';

export interface StaticSourceOptions {
  /** files and directories given to --static */
  paths: string[];
  owner: OwnerId;
  log: Logger;
  onProblem?: (p: Problem) => void;
}

const EXTENSIONS = new Set(['.json', '.yaml', '.yml']);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class StaticSource implements Source {
  readonly kind = 'static' as const;
  private readonly o: StaticSourceOptions;
  /** file → what it last said that parsed */
  private readonly byFile = new Map<string, ServiceInstance[]>();
  private readonly reported = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private readonly signal = new ChangeSignal();
  private readonly watchers: FSWatcher[] = [];
  private readonly files: string[] = [];
  private readonly dirs: string[] = [];

  constructor(o: StaticSourceOptions) {
    this.o = o;
  }

  /** Resolves the paths, reads every file once, starts watching. */
  async start(signal: AbortSignal): Promise<void> {
    for (const p of this.o.paths.map((x) => resolve(x))) {
      const st = await stat(p).catch(() => undefined);
      if (st?.isDirectory()) this.dirs.push(p); else this.files.push(p);
    }
    const watchDirs = new Set([...this.dirs, ...this.files.map((f) => dirname(f))]);
    for (const d of watchDirs) {
      try {
        const w = watch(d, { persistent: false }, (_event, name) => {
          if (!name) { for (const f of this.files) this.dirty.add(f); for (const dd of this.dirs) this.dirty.add(dd); this.signal.poke(); return; }
          const full = join(d, name.toString());
          if (this.wanted(full)) { this.dirty.add(full); this.signal.poke(); }
        });
        w.on('error', (err) => this.o.log.warn({ dir: d, err: errorMessage(err) }, 'static: watch failed'));
        this.watchers.push(w);
      } catch (err) {
        this.o.log.warn({ dir: d, err: errorMessage(err) }, 'static: cannot watch (checked again on every resync)');
      }
    }
    signal.addEventListener('abort', () => { for (const w of this.watchers) w.close(); }, { once: true });
    await this.readAll();
  }

  private wanted(file: string): boolean {
    if (this.files.includes(file)) return true;
    return this.dirs.includes(dirname(file)) && EXTENSIONS.has(extname(file)) && !basename(file).startsWith('.');
  }

  changes(signal: AbortSignal): AsyncIterable<void> {
    return this.signal.stream(signal);
  }

  async snapshot(opts?: { full: boolean }): Promise<ServiceInstance[]> {
    if (opts?.full) await this.readAll();
    else {
      const files = [...this.dirty];
      this.dirty.clear();
      for (const f of files) await this.readFile(f);
    }
    const out = new Map<string, ServiceInstance>();
    for (const [file, list] of [...this.byFile].sort(([a], [b]) => (a < b ? -1 : 1))) {
      for (const i of list) {
        if (out.has(i.id)) this.report(file, [{ file, line: 1, col: 1, reason: `id ${i.id} is also declared in ${out.get(i.id)!.origin.ref}; that one is kept` }]);
        else out.set(i.id, i);
      }
    }
    return [...out.values()];
  }

  private async readAll(): Promise<void> {
    const files = new Set(this.files);
    for (const d of this.dirs) {
      const names = await readdir(d).catch(() => [] as string[]);
      for (const n of names) if (this.wanted(join(d, n))) files.add(join(d, n));
    }
    for (const f of this.byFile.keys()) files.add(f); // gone ones are noticed
    for (const f of files) await this.readFile(f);
  }

  /** Reads a file whole once it stopped changing. */
  private async readFile(file: string): Promise<void> {
    let text: string | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        const a = await readFile(file, 'utf8');
        await sleep(40);
        const b = await readFile(file, 'utf8');
        if (a === b || attempt >= 10) { text = b; break; }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') {
          if (this.byFile.delete(file)) this.o.log.info({ file }, 'static: file removed; its services go');
          this.reported.delete(file);
          return;
        }
        this.report(file, [{ file, line: 1, col: 1, reason: `cannot read: ${errorMessage(err)}` }]);
        return;
      }
    }
    const r = parseDefinitions(text, file, this.o.owner);
    if (!r.ok) {
      this.report(file, [r.problem]);
      return; // what it said before stays
    }
    this.byFile.set(file, r.instances);
    this.report(file, r.problems);
  }

  private report(file: string, problems: Problem[]): void {
    const key = problems.map((p) => `${p.line}:${p.col} ${p.reason}`).join('\n');
    if ((this.reported.get(file) ?? '') === key) return;
    this.reported.set(file, key);
    for (const p of problems) {
      this.o.log.warn({ file: p.file, line: p.line, col: p.col, problem: escapeLogField(p.reason) }, `static: ${p.file}:${p.line}:${p.col}: ${escapeLogField(p.reason)}`);
      this.o.onProblem?.(p);
    }
  }
}
