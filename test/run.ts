// Runs the whole ava suite and ends with the plain closing line
// "ava: N passed, N failed" (CI reads it), keeping ava's exit status.
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const avaCli = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.js');
const child = spawn(process.execPath, [avaCli, ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  out += chunk.toString();
  if (out.length > 1_000_000) out = out.slice(-100_000);
});
child.on('exit', (code, signal) => {
  const plain = out.replace(/\u001b\[[0-9;]*m/g, '');
  const count = (re: RegExp): number => Number(re.exec(plain)?.[1] ?? 0);
  // ava (verbose) prints one ✔ or ✘ line a test; its own summary omits the passed count when some failed
  const passed = (plain.match(/^\s+✔ /gm) ?? []).length;
  const failed = Math.max((plain.match(/^\s+✘ /gm) ?? []).length, count(/(\d+) tests? failed/)) + count(/(\d+) uncaught exceptions?/) + count(/(\d+) unhandled rejections?/);
  const status = code ?? (signal ? 1 : 0);
  process.stdout.write(`\nava: ${passed} passed, ${failed + (status !== 0 && failed === 0 ? 1 : 0)} failed\n`);
  process.exitCode = status;
});
