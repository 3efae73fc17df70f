// The soak's config-client process: N ConfigClients on one KV prefix in one
// Node process. Every 10 s it prints one JSON line: its heap, event-loop delay
// (p99) and the value of `counter` each client holds.
// Usage: node bench/soak/config-clients.ts <consul-addr> <prefix> <n>
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createLogger } from '@gantry/core';
import { ConfigClient } from '@gantry/config-client';

const [addr = 'http://127.0.0.1:8500', prefix = 'soak/app/', n = '10'] = process.argv.slice(2);
const logger = createLogger({ component: 'soak-config-clients', level: 'warn' });
const clients = await Promise.all(Array.from({ length: Number(n) }, () => ConfigClient.start({ prefixes: [prefix], consul: { addr }, logger, failFast: false })));
const changes = clients.map(() => 0);
clients.forEach((c, i) => c.watch('counter', () => { changes[i]!++; }));
const el = monitorEventLoopDelay({ resolution: 10 });
el.enable();
const report = (): void => {
  process.stdout.write(`${JSON.stringify({
    t: Date.now(), heapUsed: process.memoryUsage().heapUsed, elP99Ms: el.percentile(99) / 1e6,
    counters: clients.map((c) => c.getString('counter') ?? ''), changes,
  })}\n`);
  el.reset();
};
report();
const timer = setInterval(report, 10_000);
const stop = async (): Promise<void> => {
  clearInterval(timer);
  await Promise.all(clients.map((c) => c.close()));
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
