// The snapshot file: written after each applied change, atomically (a new
// file renamed over the old one, no temp file left), mode 0600.
import test from 'ava';
import { link, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startConsul, type ConsulEngine } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { ConfigClient } from '../src/index.ts';
import { readSnapshot, writeSnapshotFile as writeFileAtomic } from '../src/snapshot.ts';
import { captureLogs, kvClient, nextEvent, until } from './helpers.ts';

const track = manageEngines(test);
let engine: ConsulEngine;
const kv = kvClient(() => engine.addr);

test.before(async () => {
  engine = await startConsul();
  track('consul', engine);
});

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-snapshot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('written after the first load and after each change: mode 0600, a new file each time, no temp file left', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'nested', 'app.snapshot.json');
  await kv.txn([{ set: 'snapfile/base/a', value: '1' }, { set: 'snapfile/app/b.yaml', value: 'x: 1\n' }]);
  const config = await ConfigClient.start({ prefixes: ['snapfile/base', 'snapfile/app'], consul: { addr: engine.addr }, snapshot: path, logger: captureLogs('warn').logger });
  t.teardown(() => config.close());
  await until('the first snapshot', () => stat(path).then(() => true, () => false));
  // A second name for the file read now keeps its inode in use: a file written
  // later cannot be given the same inode number (the filesystem reuses a freed
  // one, and the first load may write more than once), and a rewrite in place
  // would show through this name.
  const kept = join(dir, 'first.json');
  await link(path, kept);
  const st1 = await stat(kept);
  t.is(st1.mode & 0o777, 0o600);
  const read1 = await readSnapshot(path);
  t.true(read1.ok);
  if (read1.ok) t.deepEqual(read1.data.prefixes, { 'snapfile/base/': [['a', '1']], 'snapfile/app/': [['b.yaml', 'x: 1\n']] });

  // the first load may have written more than once: wait for the file that holds the change
  await kv.put('snapfile/app/c', 'new');
  await until('the change in the snapshot', async () => {
    const r = await readSnapshot(path).catch(() => undefined);
    return r?.ok && r.data.prefixes['snapfile/app/']?.some(([k, v]) => k === 'c' && v === 'new');
  });
  const st2 = await stat(path);
  t.not(st2.ino, st1.ino, 'replaced by rename, not rewritten in place');
  const old = await readSnapshot(kept);
  t.true(old.ok && !old.data.prefixes['snapfile/app/']!.some(([k]) => k === 'c'), 'the file read first still holds what it held');
  t.is(st2.mode & 0o777, 0o600);
  const read2 = await readSnapshot(path);
  t.true(read2.ok && read2.data.prefixes['snapfile/app/']!.some(([k, v]) => k === 'c' && v === 'new'));
  t.deepEqual((await readdir(join(dir, 'nested'))).sort(), ['app.snapshot.json']);
});

test('writeFileAtomic replaces a file with another mode by a 0600 one and cleans up when it cannot write', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 's.json');
  await writeFile(path, 'old', { mode: 0o644 });
  await writeFileAtomic(path, 'new');
  t.is(await readFile(path, 'utf8'), 'new');
  t.is((await stat(path)).mode & 0o777, 0o600);
  // the target is a folder: rename fails, the old folder stays, no temp file is left behind
  const folder = join(dir, 'folder');
  await writeFileAtomic(join(folder, 'x'), 'x');
  await t.throwsAsync(writeFileAtomic(folder, 'y'));
  t.deepEqual((await readdir(dir)).sort(), ['folder', 's.json']);
});

test('a snapshot that cannot be written is a warning; the client goes on', async (t) => {
  const dir = await tempDir(t);
  const blocker = join(dir, 'file');
  await writeFile(blocker, 'a file where the snapshot folder should be');
  await kv.put('snapfail/app/a', '1');
  const logs = captureLogs('warn');
  const config = await ConfigClient.start({ prefixes: ['snapfail/app'], consul: { addr: engine.addr }, snapshot: join(blocker, 'snap.json'), logger: logs.logger });
  t.teardown(() => config.close());
  const warning = await nextEvent(config, 'warning', (w) => w.code === 'E_SNAPSHOT_WRITE');
  t.regex(warning.message, /cannot write the snapshot/);
  const next = nextEvent(config, 'change');
  await kv.put('snapfail/app/a', '2');
  t.is((await next).newValue, '2');
});
