// close() ends every request, timer and file handle: a process that used the
// client ends by itself once it is closed.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startConsul } from '../../test/harness/engines/consul.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { kvClient } from './helpers.ts';

const track = manageEngines(test);
const fixture = fileURLToPath(new URL('./fixtures/start-close.ts', import.meta.url));

test('after close() the process ends on its own: no socket, timer or file left open', async (t) => {
  const engine = await startConsul();
  track('consul', engine);
  const kv = kvClient(() => engine.addr);
  await kv.txn([{ set: 'closefx/base/a', value: '0' }, { set: 'closefx/app/a', value: '1' }]);
  const dir = await mkdtemp(join(tmpdir(), 'gantry-close-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [fixture, engine.addr, join(dir, 'snap.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // a deadline far beyond any close, far below the 10-minute wait a leaked request would hold
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  t.teardown(() => clearTimeout(killer));
  const waitFor = async (text: string): Promise<void> => {
    while (!out.includes(text)) {
      if (child.exitCode !== null) throw new Error(`child exited early: ${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitFor('waiting');
  t.true(out.includes('started 1'), out);
  await kv.put('closefx/app/a', '2');
  const code = await exited;
  clearTimeout(killer);
  t.is(code, 0, `the process ended by itself (stdout: ${out} stderr: ${err})`);
  t.regex(out, /closed \[\]/, 'no active resource left after close()');
});
