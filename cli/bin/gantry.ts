#!/usr/bin/env -S node --max-semi-space-size=2
// `--max-semi-space-size=2`: Gantry's parts are long-running and allocate little
// at a time; a small young generation keeps the registrator at ~115 MB RSS with
// 300 containers instead of ~150 MB (bench/registrator.ts). Whoever starts
// gantry with `node` passes it too (package.json, Dockerfile, scripts/up.ts).
import { main } from '../src/main.ts';

process.exitCode = await main(process.argv.slice(2));
