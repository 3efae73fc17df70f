// A child of bench/gateway.ts: holds a catalog snapshot of N services (2 routes
// each: <service>.<domain> and urlprefix-/pN), then builds and swaps the live
// table through the gateway's own code path (RouteSource → TableBuilder →
// Gateway.swap):
//   cold     a first table from the whole snapshot (a fresh gateway each pass)
//   change1  one service's instance turns critical or back (the rest unchanged)
//   change1k 1,000 services change at once
//   policy   one service's KV policy changes (a canary weight)
// Every changed snapshot is made as core's CatalogWatcher makes it: a new map
// with a new object for every instance, so the builder compares contents.
// Between phases it prints a mark and waits for a line on stdin, so the parent
// can read this process's RSS from /proc.
import { createInterface } from 'node:readline';
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
import { standaloneGateway } from './standalone.ts';

const n = Number(process.argv[2] ?? 50_000);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const mark = async (what: string): Promise<void> => { process.stdout.write(`${what} \n`); await lines.next(); };

let services = new Map<string, CatalogInstance[]>();
for (let i = 0; i < n; i++) {
  const name = `svc${i}`;
  services.set(name, [{
    key: `node\u0000${name}-1`, node: 'node', nodeAddress: '10.0.0.1', id: `${name}-1`, service: name,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080, tags: [`urlprefix-/p${i}`], meta: {}, createIndex: i, modifyIndex: i, status: 'passing',
  }]);
}
let kv = new Map<string, string>();
let version = 1;
const snapshot = (): CatalogSnapshot => ({ services, kv, indexes: { catalog: '1', health: '1', kv: '1' }, version: version++ });
/** the next snapshot, as the watcher publishes it: every instance a new object; `flip` services change health */
const republish = (flip: number[]): CatalogSnapshot => {
  const next = new Map<string, CatalogInstance[]>();
  for (const [name, list] of services) next.set(name, list.map((i) => ({ ...i })));
  for (const k of flip) {
    const i = next.get(`svc${k}`)![0]!;
    next.set(`svc${k}`, [{ ...i, status: i.status === 'passing' ? 'critical' : 'passing' }]);
  }
  services = next;
  return snapshot();
};
let current: CatalogSnapshot = snapshot();
await mark('snapshot');

const timed = (fn: () => void): number => { const t0 = performance.now(); fn(); return performance.now() - t0; };
const cold: number[] = [];
let live = standaloneGateway(() => current);
cold.push(timed(() => live.source.apply(current)));
await mark('swapped');
for (let pass = 0; pass < 2; pass++) {
  live = standaloneGateway(() => current);
  cold.push(timed(() => live.source.apply(current)));
}
const change1: number[] = [];
const change1k: number[] = [];
const policy: number[] = [];
for (let pass = 0; pass < 20; pass++) { current = republish([pass * 7 % n]); change1.push(timed(() => live.source.apply(current))); }
for (let pass = 0; pass < 5; pass++) { current = republish(Array.from({ length: 1000 }, (_, i) => (pass * 1000 + i * 37) % n)); change1k.push(timed(() => live.source.apply(current))); }
for (let pass = 0; pass < 20; pass++) {
  kv = new Map([['policy/svc5', JSON.stringify({ split: [{ subset: { v: '1' }, weight: 100 - pass }, { subset: { v: '2' }, weight: pass + 1 }] })]]);
  current = republish([]);
  policy.push(timed(() => live.source.apply(current)));
}
const weight = (live.gateway.current()?.lookup('svc5.gantry.test', '/')?.targets[0]?.policy?.split[1]?.weight);
if (weight !== 20) throw new Error(`policy change not applied (weight ${weight})`);
process.stdout.write(`times ${JSON.stringify({ cold, change1, change1k, policy, routes: live.gateway.current()?.size ?? 0 })}\ndone\n`);
process.exit(0);
