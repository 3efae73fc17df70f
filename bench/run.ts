// `npm run bench -- <suite> [<suite> ...]`: runs each suite's bench/<suite>.ts
// and prints its JSON lines. No suite named: every suite.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { emit, type BenchResult } from './lib.ts';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'lib.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''));

// long or heavy suites run only when named (the soak takes 20 min by default; scale
// registers 20,000 services and thousands of containers)
const ONLY_WHEN_ASKED = ['soak', 'scale'];
const asked = process.argv.slice(2);
const unknown = asked.filter((s) => !available.includes(s));
if (unknown.length) {
  process.stderr.write(`bench: unknown suite ${unknown.join(', ')}; available: ${available.join(', ')}\n`);
  process.exit(2);
}
for (const suite of asked.length ? asked : available.filter((s) => !ONLY_WHEN_ASKED.includes(s))) {
  const mod = (await import(join(here, `${suite}.ts`))) as { run: () => Promise<BenchResult[]> };
  for (const r of await mod.run()) emit(r);
}
