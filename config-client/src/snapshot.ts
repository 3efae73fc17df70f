// The local snapshot: the raw KV entries of every prefix, so an app starts
// when Consul cannot be reached. Written atomically (temp file in the same
// folder, fsync, rename, fsync of the folder: core's writeFileAtomic), mode 0600; read back strictly:
// anything that is not a snapshot of ours is reported, never trusted.
import { readFile } from 'node:fs/promises';
import { errorMessage, writeFileAtomic } from '@gantry/core';

export const SNAPSHOT_VERSION = 1;

export interface SnapshotData {
  version: number;
  savedAt: string;
  /** prefix → its entries as [key relative to the prefix, value] */
  prefixes: Record<string, Array<[string, string]>>;
}

export type SnapshotRead =
  | { ok: true; data: SnapshotData }
  | { ok: false; reason: 'missing' | 'corrupt' | 'unreadable'; message: string };

export async function readSnapshot(path: string): Promise<SnapshotRead> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return { ok: false, reason: missing ? 'missing' : 'unreadable', message: missing ? `no snapshot file at ${path}` : `cannot read snapshot ${path}: ${errorMessage(err)}` };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: 'corrupt', message: `snapshot ${path} is corrupt (${errorMessage(err)})` };
  }
  const problem = checkShape(data);
  if (problem) return { ok: false, reason: 'corrupt', message: `snapshot ${path} is corrupt (${problem})` };
  return { ok: true, data: data as SnapshotData };
}

function checkShape(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'not a JSON object';
  const d = data as Record<string, unknown>;
  if (d.version !== SNAPSHOT_VERSION) return `version ${JSON.stringify(d.version)}, expected ${SNAPSHOT_VERSION}`;
  const prefixes = d.prefixes;
  if (typeof prefixes !== 'object' || prefixes === null || Array.isArray(prefixes)) return '"prefixes" is not an object';
  for (const [prefix, entries] of Object.entries(prefixes)) {
    if (!Array.isArray(entries)) return `entries of ${JSON.stringify(prefix)} are not a list`;
    for (const e of entries as unknown[]) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'string') {
        return `an entry of ${JSON.stringify(prefix)} is not a [key, value] pair of strings`;
      }
    }
  }
  return undefined;
}

/** the snapshot: core's writeFileAtomic, readable by the owner only */
export const writeSnapshotFile = (path: string, text: string): Promise<void> => writeFileAtomic(path, text, { mode: 0o600, dirMode: 0o700 });

/**
 * Writes the snapshot after changes, one write at a time: a change while a
 * write runs makes one more write of the latest state afterwards.
 */
export class SnapshotWriter {
  private readonly path: string;
  private readonly serialize: () => string;
  private readonly onWritten: () => void;
  private readonly onError: (err: unknown) => void;
  private dirty = false;
  private running: Promise<void> | undefined;

  constructor(opts: { path: string; serialize: () => string; onWritten: () => void; onError: (err: unknown) => void }) {
    this.path = opts.path;
    this.serialize = opts.serialize;
    this.onWritten = opts.onWritten;
    this.onError = opts.onError;
  }

  schedule(): void {
    this.dirty = true;
    this.running ??= this.loop().finally(() => { this.running = undefined; });
  }

  /** resolves once nothing is written or waiting to be */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    // let the change that scheduled us finish (listeners, more answers) before serializing
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.dirty) {
      this.dirty = false;
      try {
        await writeSnapshotFile(this.path, this.serialize());
        this.onWritten();
      } catch (err) {
        this.onError(err);
      }
    }
  }
}

export function serializeSnapshot(prefixes: Record<string, Array<[string, string]>>): string {
  const data: SnapshotData = { version: SNAPSHOT_VERSION, savedAt: new Date().toISOString(), prefixes };
  return JSON.stringify(data);
}
