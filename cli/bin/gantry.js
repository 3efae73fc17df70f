#!/usr/bin/env -S node --max-semi-space-size=2
// The `gantry` command. Plain JavaScript on purpose: it turns on Node's compile
// cache before any TypeScript is loaded, so every start after the first reuses
// the stripped sources and V8's code cache instead of loading the type stripper
// and compiling again: the registrator idles at ~80 MB RSS instead of ~108 MB
// (bench/registrator.ts). The cache lives in $NODE_COMPILE_CACHE, else
// <tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off. It is
// keyed by file content, so an edited source is compiled afresh.
//
// `--max-semi-space-size=2`: Gantry's parts are long-running and allocate little
// at a time; a small young generation keeps RSS down (~35 MB less with 300
// containers). Whoever starts gantry with `node` passes it too (package.json,
// Dockerfile, scripts/up.ts, test/harness/gantry.ts).
import module from 'node:module';

module.enableCompileCache?.();
// parts load their modules lazily at start; write the cache once they have,
// rather than only at a clean exit
setTimeout(() => module.flushCompileCache?.(), 10_000).unref();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv.slice(2));
