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
//
// Except `gantry gateway`: every request it proxies allocates (node:http's
// IncomingMessage and ServerResponse, undici's request, the header objects) and
// that dies young; with 2 MB semi-spaces scavenges took ~20 % of its CPU
// (bench/gateway/serve-static.ts under wrk -t1 -c50: 127 -> 103 µs CPU per
// request with 16 MB). It re-executes itself with 16 MB (process.execve: same
// pid, nothing has run yet), unless started with a semi-space size of its own.
//
// And `gantry registrator` re-executes itself with `--optimize-for-size`: it runs
// on every host, handles a change a second at most, and without the flag V8 kept
// growing its heap for minutes under churn (three registrators side by side, one
// container started or stopped a second each, 14 min: RSS +8.4 % from minute 5
// to the end as it is, +8.7 % with MALLOC_ARENA_MAX=2, +0.9 % with the flag;
// heap reserved 15.2 -> 18.9 MB against 14.1 -> 14.5). The compile cache keeps
// one entry per flag set, so its first start with the flag compiles once.
import module from 'node:module';

const GATEWAY_SEMI_SPACE = '--max-semi-space-size=16';
const REGISTRATOR_FLAG = '--optimize-for-size';
if (process.argv[2] === 'gateway' && typeof process.execve === 'function'
  && process.execArgv.every((a) => !a.startsWith('--max-semi-space-size') || a === '--max-semi-space-size=2')) {
  const flags = process.execArgv.filter((a) => !a.startsWith('--max-semi-space-size'));
  process.execve(process.execPath, [process.execPath, ...flags, GATEWAY_SEMI_SPACE, ...process.argv.slice(1)], process.env);
}
if (process.argv[2] === 'registrator' && typeof process.execve === 'function' && !process.execArgv.includes(REGISTRATOR_FLAG)) {
  process.execve(process.execPath, [process.execPath, ...process.execArgv, REGISTRATOR_FLAG, ...process.argv.slice(1)], process.env);
}

module.enableCompileCache?.();
// parts load their modules lazily at start; write the cache once they have,
// rather than only at a clean exit
setTimeout(() => module.flushCompileCache?.(), 10_000).unref();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv.slice(2));
