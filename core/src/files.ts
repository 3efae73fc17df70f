// Files written so a crash leaves either the old file or the new one, never a
// half-written one: a temporary file in the destination's folder (same file
// system, so the rename is atomic), written and fsync'd, its mode set (open's
// mode is filtered by the umask), renamed over the destination, then the
// folder fsync'd so the rename itself is durable. The one writer for the
// config snapshot, the templater's rendered files, the VIP pool and state files.
import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface AtomicWriteOptions {
  /** the file's mode (default 0644) */
  mode?: number;
  /** the mode of folders created on the way (default 0755) */
  dirMode?: number;
}

/** Writes content next to dest under a temporary name (fsync'd, mode set); returns that name. */
export async function writeTempFile(dest: string, content: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<string> {
  const mode = opts.mode ?? 0o644;
  const dir = dirname(dest);
  await mkdir(dir, { recursive: true, mode: opts.dirMode ?? 0o755 });
  const tmp = join(dir, `.${basename(dest)}.gantry-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, mode);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return tmp;
}

/** Renames tmp over dest, then fsyncs the folder so the rename survives a crash. */
export async function renameDurable(tmp: string, dest: string): Promise<void> {
  await rename(tmp, dest);
  // not every file system lets a folder be opened and synced: then the rename is as durable as it gets
  const dh = await open(dirname(dest), 'r').catch(() => undefined);
  if (dh) await dh.sync().catch(() => undefined).finally(() => dh.close());
}

/** Replaces dest with content, or leaves it as it was. */
export async function writeFileAtomic(dest: string, content: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = await writeTempFile(dest, content, opts);
  try {
    await renameDurable(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
