// Mirror a Consul KV prefix in memory, print one value, then every change.
//
//   make up                                     # terminal 1: Consul on http://127.0.0.1:8500
//   node config-client/examples/watch-value.ts  # terminal 2 (args: [prefix] [key])
//   curl -X PUT --data 'hello' http://127.0.0.1:8500/v1/kv/config/demo/greeting    # terminal 3
//   curl -X PUT --data 'bonjour' http://127.0.0.1:8500/v1/kv/config/demo/greeting
//   curl -X DELETE http://127.0.0.1:8500/v1/kv/config/demo/greeting
//
// CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT ... are read as the consul CLI reads them.
// Stop Consul while it runs: the value stays readable (and a restart of this
// example starts from the snapshot file it keeps in the system's temp folder).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consulConfigFromEnv, createLogger } from '@gantry/core';
import { ConfigClient } from '@gantry/config-client';

const prefix = process.argv[2] ?? 'config/demo/';
const key = process.argv[3] ?? 'greeting';
const consul = consulConfigFromEnv();
const say = (line: string): void => { process.stdout.write(`${line}\n`); };

say(`Mirroring ${consul.addr}/v1/kv/${prefix} … (Ctrl-C to stop)`);
const config = await ConfigClient.start({
  prefixes: [prefix],
  consul,
  snapshot: join(tmpdir(), 'gantry-watch-value.snapshot.json'),
  startTimeout: '5s',
  logger: createLogger({ component: 'watch-value', level: process.env.GANTRY_LOG_LEVEL ?? 'warn' }),
}).catch((err: unknown) => {
  say(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
  say('Is Consul running? `make up` starts one on http://127.0.0.1:8500 (or set CONSUL_HTTP_ADDR).');
  process.exit(1);
});

say(`loaded from ${config.source}: ${config.size} key(s)`);
say(`${key} = ${JSON.stringify(config.get(key) ?? null)}   (get() is a memory read)`);

config.watch(key, ({ type, oldValue, newValue }) => {
  say(`${new Date().toISOString()}  ${key} ${type}: ${JSON.stringify(oldValue ?? null)} -> ${JSON.stringify(newValue ?? null)}`);
});
config.on('change', ({ key: other, type }) => {
  if (other !== key) say(`${new Date().toISOString()}  (${other} ${type})`);
});
config.on('source', ({ source, previous }) => say(`source: ${previous} -> ${source}`));
config.on('invalid', ({ key: doc, message }) => say(`document ${doc} does not parse, keeping its last values: ${message}`));

const stop = (): void => { void config.close().then(() => process.exit(0)); };
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
