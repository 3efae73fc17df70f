// A child of bench/gateway.ts: holds a catalog snapshot of N services (2 routes
// each: <service>.<domain> and urlprefix-/pN), then builds and swaps the live
// table through the gateway's own code path (RouteSource → Gateway.swap) five
// times. Between phases it prints a mark and waits for a line on stdin, so the
// parent can read this process's RSS from /proc.
import { createInterface } from 'node:readline';
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
import { standaloneGateway } from './standalone.ts';

const n = Number(process.argv[2] ?? 50_000);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const mark = async (what: string): Promise<void> => { process.stdout.write(`${what} \n`); await lines.next(); };

const services = new Map<string, CatalogInstance[]>();
for (let i = 0; i < n; i++) {
  const name = `svc${i}`;
  services.set(name, [{
    key: `node\u0000${name}-1`, node: 'node', nodeAddress: '10.0.0.1', id: `${name}-1`, service: name,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080, tags: [`urlprefix-/p${i}`], meta: {}, createIndex: i, modifyIndex: i, status: 'passing',
  }]);
}
let version = 1;
const snapshot = (): CatalogSnapshot => ({ services, kv: new Map(), indexes: { catalog: '1', health: '1', kv: null }, version: version++ });
let current: CatalogSnapshot = snapshot();
await mark('snapshot');

const buildMs: number[] = [];
const { gateway, source } = standaloneGateway(() => current);
for (let pass = 0; pass < 5; pass++) {
  current = snapshot();
  const t0 = performance.now();
  source.apply(current);
  buildMs.push(performance.now() - t0);
}
await mark('swapped');
process.stdout.write(`times ${JSON.stringify({ buildMs, routes: gateway.current()?.routes.length ?? 0 })}\ndone\n`);
process.exit(0);
