// A watcher under measurement, run as its own process by bench/watch.ts: it
// prints one JSON line when it is ready and one each time the instance IDs of
// the service `bench-target` change. Timing and request counting happen
// outside, in the bench (the write's time → this line's arrival; a counting
// proxy in front of Consul).
//   node bench/watch/probe.ts watcher <consul addr>
//     core's CatalogWatcher (two blocking queries whatever the number of services)
//   node bench/watch/probe.ts per-service <consul addr>
//     the baseline: one blocking /v1/health/service/<name> loop a service, as
//     consul-template does, the list of services followed by /v1/catalog/services
import { CatalogWatcher, createConsul, createLogger, runBlockingQuery } from '@gantry/core';

const [mode, addr] = process.argv.slice(2);
if ((mode !== 'watcher' && mode !== 'per-service') || !addr) {
  process.stderr.write('usage: probe.ts watcher|per-service <consul addr>\n');
  process.exit(2);
}
const TARGET = 'bench-target';
const consul = createConsul({ addr, maxSockets: 100_000 });
const out = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };
let last = '';
const report = (ids: string[]): void => {
  const key = [...ids].sort().join(',');
  if (key === last) return;
  last = key;
  out({ ids: key ? key.split(',') : [] });
};
const ac = new AbortController();
process.on('SIGTERM', () => { ac.abort(); consul.close(); process.exit(0); });

if (mode === 'watcher') {
  const w = new CatalogWatcher({ consul, log: createLogger({ component: 'bench-probe', level: 'silent' }), minSpacingMs: 0 });
  w.onChange((s) => report((s.services.get(TARGET) ?? []).map((i) => i.id)));
  w.start(ac.signal);
  await w.ready();
  out({ ready: true });
} else {
  const loops = new Map<string, AbortController>();
  let first = true;
  const follow = (name: string): void => {
    const one = new AbortController();
    loops.set(name, one);
    void runBlockingQuery<Array<{ Service: { ID: string } }>>({
      consul, path: `/v1/health/service/${encodeURIComponent(name)}`, endpoint: name, waitMs: 300_000, signal: one.signal,
      onChange: (body) => { if (name === TARGET) report(body.map((e) => e.Service.ID)); },
    });
  };
  await runBlockingQuery<Record<string, string[]>>({
    consul, path: '/v1/catalog/services', endpoint: 'catalog', waitMs: 300_000, signal: ac.signal,
    onChange: (body) => {
      for (const name of Object.keys(body)) if (!loops.has(name)) follow(name);
      for (const [name, one] of loops) if (!(name in body)) { one.abort(); loops.delete(name); if (name === TARGET) report([]); }
      if (first) { first = false; out({ ready: true }); }
    },
  });
}
