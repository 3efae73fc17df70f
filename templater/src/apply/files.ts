// Files written the safe way: a temporary file in the destination's directory
// (same filesystem, so the rename is atomic), fsync'd, with its permissions set,
// then renamed over the destination. The last good file is kept as <dest>.bak
// and put back when what replaced it could not be loaded.
import { rename, readFile, unlink, copyFile } from 'node:fs/promises';
import { renameDurable, writeTempFile } from '@gantry/core';

export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** writes content next to dest under a temporary name (core's writeTempFile); returns that name */
export function writeTemp(dest: string, content: string, mode: number): Promise<string> {
  return writeTempFile(dest, content, { mode });
}

export async function removeQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => undefined);
}

export const backupPath = (dest: string): string => `${dest}.bak`;

/** copies the current destination (the last good file) to <dest>.bak, atomically */
export async function backup(dest: string): Promise<boolean> {
  const current = await readIfExists(dest);
  if (current === undefined) return false;
  const tmp = `${backupPath(dest)}.tmp-${process.pid}`;
  await copyFile(dest, tmp);
  await rename(tmp, backupPath(dest));
  return true;
}

/** puts <dest>.bak back in place of dest */
export async function restoreBackup(dest: string): Promise<boolean> {
  const tmp = `${dest}.restore-${process.pid}`;
  try {
    await copyFile(backupPath(dest), tmp);
  } catch {
    return false;
  }
  await rename(tmp, dest);
  return true;
}

/** renames the checked temporary file over dest, durably (core's renameDurable) */
export function replace(tmp: string, dest: string): Promise<void> {
  return renameDurable(tmp, dest);
}
