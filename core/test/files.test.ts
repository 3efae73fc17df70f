import test from 'ava';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, writeTempFile, renameDurable } from '../src/index.ts';

test('writeFileAtomic replaces the file with the mode asked for (whatever the umask), creating folders, leaving no temporary file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-files-'));
  try {
    const path = join(dir, 'a', 'b', 'out.cfg');
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(path, 'one', { mode: 0o644 });
    } finally {
      process.umask(old);
    }
    t.is(await readFile(path, 'utf8'), 'one');
    t.is((await stat(path)).mode & 0o777, 0o644);
    await writeFileAtomic(path, Buffer.from('two'), { mode: 0o600 });
    t.is(await readFile(path, 'utf8'), 'two');
    t.is((await stat(path)).mode & 0o777, 0o600);
    t.deepEqual(await readdir(join(dir, 'a', 'b')), ['out.cfg']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('writeFileAtomic leaves the old file and no temporary file when the rename fails', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-files-'));
  try {
    // the destination is a non-empty folder: the rename over it fails
    const dest = join(dir, 'busy');
    await mkdir(dest);
    await writeFile(join(dest, 'x'), 'x');
    await t.throwsAsync(writeFileAtomic(dest, 'y'));
    t.deepEqual((await readdir(dir)).sort(), ['busy']);
    t.is(await readFile(join(dest, 'x'), 'utf8'), 'x');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('writeTempFile + renameDurable: the checked temporary file becomes the destination', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-files-'));
  try {
    const dest = join(dir, 'haproxy.cfg');
    await writeFile(dest, 'old');
    const tmp = await writeTempFile(dest, 'new', { mode: 0o640 });
    t.is(await readFile(dest, 'utf8'), 'old', 'the destination is untouched until the rename');
    t.is(await readFile(tmp, 'utf8'), 'new');
    await renameDurable(tmp, dest);
    t.is(await readFile(dest, 'utf8'), 'new');
    t.is((await stat(dest)).mode & 0o777, 0o640);
    t.deepEqual(await readdir(dir), ['haproxy.cfg']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
